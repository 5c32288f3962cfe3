"""The producer side of newsdedup: the message contract, URL normalisation, and the ingest tool."""
