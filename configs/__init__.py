"""Config files (one per recipe, each with get_config) and the recipes they share (common.py)."""
