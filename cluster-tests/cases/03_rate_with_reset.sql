SELECT rate(requests), increase(requests) FROM http WHERE time >= {t+3600} AND time < {t+7200} GROUP BY time(15m), host
