"""End-to-end scenarios run by ``streamml demo``."""
