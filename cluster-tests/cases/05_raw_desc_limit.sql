SELECT usage_user, usage_system, region FROM cpu WHERE host = 'b' AND time >= {t+0} ORDER BY time DESC LIMIT 3
