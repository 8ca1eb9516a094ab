"""Selective classification: a source's group view, Chow's rule and the plug-in rejectors, and their sweep
over sources and rejection rates. It computes and writes nothing (argse.reports writes the results)."""
