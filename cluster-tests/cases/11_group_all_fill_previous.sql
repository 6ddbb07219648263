SELECT last(usage_user) FROM cpu WHERE region = 'eu' AND time >= {t+1500} AND time < {t+3000} GROUP BY time(5m), * fill(previous)
