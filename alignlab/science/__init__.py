"""The findings of the papers alignlab follows, each a claim with a computed verdict (`alignlab-report`), and
per-objective tuning (`alignlab-tune`)."""
