"""harness: evaluation-first benchmark harness for parameter-efficient fine-tuning."""

__version__ = "0.1.0"

# The results version: part of every result-store key. Bump it in any change that can change
# what the harness computes for an example (a prompt, tokenisation, decoding, scoring or
# record-format change, a kernel with other rounding), so that no store serves an answer that
# an older harness computed. Changes that only make the same numbers faster keep it.
RESULTS_VERSION = 1
