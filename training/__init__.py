"""Model, precision recipes, data loading and the trainer. Never imports `curation`."""
