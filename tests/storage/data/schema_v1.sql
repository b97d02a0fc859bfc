-- A store file written by ergon_actors at schema version 1 (sqlite3's iterdump of it): a
-- pending, a running (one step journaled), a failed flow, a parent suspended on its child, and
-- a signal. A dump leaves out PRAGMA application_id; tests/storage/test_sqlite.py sets it.
BEGIN TRANSACTION;
CREATE TABLE ergon_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "ergon_meta" VALUES('schema_version','1');
CREATE TABLE flows (
    flow_id TEXT PRIMARY KEY, flow_type TEXT NOT NULL, args BLOB NOT NULL, status TEXT NOT NULL,
    version TEXT, attempt INTEGER NOT NULL, epoch INTEGER NOT NULL, owner TEXT,
    lease_expires REAL, ready_at REAL, result BLOB, error BLOB, parent_id TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL, waiting_on TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, claim_request TEXT);
INSERT INTO "flows" VALUES('pending','Order',X'81A16101','PENDING',NULL,1,0,NULL,NULL,1.79593316657531929013e+09,NULL,NULL,NULL,1.79593316657531929013e+09,1.79593316657531929013e+09,NULL,0,NULL);
INSERT INTO "flows" VALUES('running','Order',X'80','RUNNING',NULL,1,1,'old-worker',1.79593676657679581637e+09,1.79593316657614088054e+09,NULL,NULL,NULL,1.79593316657614088054e+09,1.79593316657679581641e+09,NULL,0,'e277c5dc0514492a9ab4368f2da8e209');
INSERT INTO "flows" VALUES('failed','Order',X'80','FAILED',NULL,1,1,NULL,NULL,NULL,NULL,X'C71C4095B36275696C74696E733A56616C75654572726F72A3626164C2A0C0',NULL,1.79593316657846736907e+09,1.79593316657992815976e+09,NULL,0,'b179c9d027d7450e8ff257b7f6360361');
INSERT INTO "flows" VALUES('parent','Parent',X'80','SUSPENDED',NULL,1,1,NULL,NULL,NULL,NULL,NULL,NULL,1.79593316658053112032e+09,1.79593316658214783663e+09,'child:parent/0',0,'818f9b13b514464bbfdbc42c89469c12');
INSERT INTO "flows" VALUES('parent/0','Kid',X'80','PENDING',NULL,1,0,NULL,NULL,1.79593316658197760587e+09,NULL,NULL,'parent',1.79593316658197760587e+09,1.79593316658197760587e+09,NULL,0,NULL);
CREATE TABLE signals (name TEXT PRIMARY KEY, payload BLOB NOT NULL, created_at REAL NOT NULL,
    consumer TEXT);
INSERT INTO "signals" VALUES('go',X'A26F6B',1.7959331665828640461e+09,NULL);
CREATE TABLE steps (
    flow_id TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL,
    args_hash INTEGER NOT NULL, status TEXT NOT NULL, result BLOB, error BLOB,
    attempt INTEGER NOT NULL, completed_at REAL NOT NULL, tries INTEGER NOT NULL, retry_at REAL,
    PRIMARY KEY (flow_id, position)) WITHOUT ROWID;
INSERT INTO "steps" VALUES('running',0,'reserve',7,'COMPLETE',X'A172',NULL,1,1.79593316657779407505e+09,1,NULL);
CREATE INDEX flows_ready ON flows (status, flow_type, ready_at);
CREATE INDEX flows_lease ON flows (status, flow_type, lease_expires);
CREATE INDEX flows_owner ON flows (owner) WHERE owner IS NOT NULL;
CREATE INDEX flows_parent ON flows (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX flows_waiting ON flows (waiting_on) WHERE waiting_on IS NOT NULL;
COMMIT;
