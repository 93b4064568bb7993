"""The YAML configs the commands read, validated in one go: `curate` and `pipeline`."""
