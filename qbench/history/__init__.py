"""Stage 5: everything under results/ is read and written here, and only here."""
