"""The subset-selection study of issue 7: four ASHA searches (full data 50/25 epochs, random and
GRAD-MATCH 12.5%), their full-data retraining, and the report. See README.md beside this file."""
