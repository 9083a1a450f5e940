"""Readers and generators of household records: each returns validated canonical records."""
