"""lot-sender: generated or replayed orders to the orders topic at a controlled rate, with an
acknowledgement and lead-time report (load tests, DLQ tests, demos).  ``factorysim run --demo``
feeds its lots through the same generation and pacing code."""
