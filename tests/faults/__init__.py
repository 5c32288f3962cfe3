"""Fault injection against real Kafka and PostgreSQL (an instance of its own): see conftest.py."""
