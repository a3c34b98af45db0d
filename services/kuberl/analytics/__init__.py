"""N6, the analytics role: the metrics store behind ReportMetrics and QueryMetrics."""
