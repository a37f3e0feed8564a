"""How many evaluations of the accuracy images a night of the grid computes, by shard split and worker version
(before: shards by (model, batch) family, the fp32 case evaluating apart from its children's reference logits,
fp32_bf16 evaluating in every process; after: shards by model, each figure once per shard).

    qbench list --suite nightly --json > nightly.jsonl
    python benchmarks/gridcost/count_evals.py nightly.jsonl
"""
import json, sys
from collections import defaultdict
rows = [json.loads(l)["case"] for l in open(sys.argv[1]) if not json.loads(l)["skip_reason"]]
def split(by, n):
    groups = defaultdict(list)
    for c in rows:
        groups[(c['model'],) if by == 'model' else (c['model'], c['batch_size'])].append(c)
    # balanced by case count only: which group lands where does not change the count for 'model'; for 'family' the
    # worst case is that b1 and b8 of a model are apart, which LPT makes likely once n is large
    shards = [[] for _ in range(n)]; loads = [0]*n
    for k in sorted(groups, key=lambda k: (-len(groups[k]), k)):
        i = min(range(n), key=lambda j: (loads[j], j)); shards[i] += groups[k]; loads[i] += len(groups[k])
    return shards
def evals(shards, before, repeat=3):
    total = 0
    for shard in shards:
        seen = set()
        for c in shard:
            figs = []
            if c['mode'] == 'fp32_bf16':
                figs = [('bf16', c['model'], c['batch_size'], r) for r in range(repeat)] if before else [('bf16', c['model'])]
                total += 2 * len([f for f in figs if f not in seen]); seen.update(figs); continue
            figs.append(('acc', c['model'], c['mode'], c['engine'], c['qconfig']))
            figs.append(('ref', c['model']))
            for f in figs:
                if f in seen: continue
                seen.add(f)
                if f[0] == 'acc' and c['mode'] == 'fp32' and not before: continue
                total += 1
    return total
for n in (1, 8, 16, 32, 48):
    print(f"{n:3d} shards: before (family split, old worker) {evals(split('family', n), True):5d}   after (model split, new worker) {evals(split('model', n), False):5d}")
