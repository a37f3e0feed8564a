"""Stage 7: what people read: run summaries, comparison and history tables, report documents, the asv export and dashboard."""
