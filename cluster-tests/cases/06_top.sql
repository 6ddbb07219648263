SELECT top(usage_user, 2) FROM cpu WHERE time >= {t+0} AND time < {t+600} GROUP BY region
