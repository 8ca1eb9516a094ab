"""Data: datasets, the seeded long-tailed splits and their manifest, class groups, image decoding and
preprocessing, and the logits and metrics every later step reads on those splits."""
