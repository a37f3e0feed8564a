"""Stage 3, the parent side: sessions of isolated workers, the run lifecycle, machine and provenance, ab, microbench, peaks."""
