"""Document curation stages: each is a plain function or small class over one Arrow table."""
