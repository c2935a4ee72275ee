"""augscale: grow a fine-tuning set with verified samples and measure what the extra data buys."""

__version__ = "0.1.0"
