"""A plugin whose import fails with its own error (not an ImportError): argse names it in one sentence."""

raise RuntimeError("this plugin needs a licence server")
