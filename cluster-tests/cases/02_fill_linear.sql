SELECT mean(usage_user) FROM cpu WHERE host = 'c' AND time >= {t+1200} AND time < {t+3600} GROUP BY time(5m) fill(linear)
