-- 0003_audit_ts_brin: the trail's time index as BRIN. Events are appended in seq order
-- with a batch's wall-clock time, so ts follows the table's physical order: a block-range
-- summary answers "since/until" filters nearly as well as a B-tree, and costs almost
-- nothing to keep up on every append (it was a B-tree insert per event). If the clock
-- ever steps back the index stays correct, only less selective.
DROP INDEX audit_events_ts;
CREATE INDEX audit_events_ts ON audit_events USING brin (ts);
