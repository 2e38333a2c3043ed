"""What every FK node shares."""

CATEGORY = "sampling/FK steering"  # where the nodes appear in ComfyUI's node menu
