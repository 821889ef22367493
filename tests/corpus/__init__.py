"""The corpus: realistic messages, their envelopes and DNS, the expected table and its tools."""
