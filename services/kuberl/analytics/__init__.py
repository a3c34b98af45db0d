"""The analytics role: the metrics store behind ReportMetrics and QueryMetrics."""
