SELECT count(requests) FROM http WHERE time >= {t+0} AND time < {t+7200} GROUP BY host SLIMIT 2 SOFFSET 1
