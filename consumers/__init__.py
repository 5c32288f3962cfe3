"""The consuming side of newsdedup: the pure stages, the matcher, storage, and the Kafka roles."""
