SELECT mean(usage_user) FROM cpu WHERE usage_system > 3;
SELECT usage_user FROM cpu GROUP BY time(1m)