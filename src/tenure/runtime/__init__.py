"""The imperative shell: clocks, the batch pipeline and input handling."""
