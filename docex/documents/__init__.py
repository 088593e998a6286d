"""What a 公文 is on paper: the GB/T 9704-2012 layout (``compose``)."""
