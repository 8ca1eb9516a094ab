"""Selective classification: the rejectors, their evaluation over sources and rejection rates, the report
and rules files, and the tables, pages and plots of the results."""
