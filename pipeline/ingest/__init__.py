"""RTP ingest: UDP receivers per call leg, the call registry, and its bus stage."""
