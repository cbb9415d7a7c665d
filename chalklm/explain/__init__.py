"""`chalklm explain`: a local page that shows every number of your own model (see trace.py)."""
