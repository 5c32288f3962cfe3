"""The pure stages: extract, normalise, fingerprint, match, elect.

Each module imports only the standard library, numpy, datasketch and its own text tools:
no Kafka, no database, no metrics, no environment. The runners own I/O, timing and errors.
"""
