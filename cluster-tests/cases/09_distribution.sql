SELECT median(usage_user), percentile(usage_user, 90), stddev(usage_user), spread(usage_user), count(usage_user) FROM cpu WHERE time >= {t+0} AND time < {t+7200} GROUP BY host
