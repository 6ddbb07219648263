SELECT mean(usage_user) + mean(usage_system) AS busy FROM cpu WHERE time >= {t+0} AND time < {t+7200} GROUP BY host HAVING mean(usage_user) > 5
