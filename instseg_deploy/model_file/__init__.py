"""What an exported model file says about itself: the metadata document and how to read it from a file."""
