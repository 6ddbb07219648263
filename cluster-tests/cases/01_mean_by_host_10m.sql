SELECT mean(usage_user), max(usage_system) FROM cpu WHERE time >= {t+0} AND time < {t+3600} GROUP BY time(10m), host
