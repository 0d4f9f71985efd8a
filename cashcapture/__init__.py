"""cashcapture package."""
