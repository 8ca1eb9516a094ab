"""What an evaluation leaves behind: the report and rules files, the tables, CSV and markdown pages, the
risk-coverage plots, and the published figures the pages are held against."""
