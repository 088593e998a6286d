-- docex hub tracking store at commit a509041 (alembic revision 0002), SQLite; made by running that
-- commit's own migrations (docex.hub.db.migrate) and dumping the schema: sqlite3 hub.db .schema
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE audit (
	id INTEGER NOT NULL, 
	at DATETIME NOT NULL, 
	actor VARCHAR(200) NOT NULL, 
	action VARCHAR(60) NOT NULL, 
	subject VARCHAR(200) NOT NULL, 
	detail TEXT NOT NULL, 
	prev_hash VARCHAR(64) NOT NULL, 
	hash VARCHAR(64) NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (hash)
);
CREATE INDEX ix_audit_action ON audit (action);
CREATE INDEX ix_audit_subject ON audit (subject);
CREATE TABLE documents (
	message_id VARCHAR(64) NOT NULL, 
	sender VARCHAR(200) NOT NULL, 
	title TEXT NOT NULL, 
	doc_number VARCHAR(120) NOT NULL, 
	priority VARCHAR(10) NOT NULL, 
	classification VARCHAR(10) NOT NULL, 
	size INTEGER NOT NULL, 
	envelope_sha256 VARCHAR(64) NOT NULL, 
	origin VARCHAR(120) NOT NULL, 
	created_at DATETIME NOT NULL, 
	accepted_at DATETIME NOT NULL, 
	deadline DATETIME, 
	PRIMARY KEY (message_id)
);
CREATE INDEX ix_documents_accepted_at ON documents (accepted_at);
CREATE INDEX ix_documents_doc_number ON documents (doc_number);
CREATE INDEX ix_documents_sender ON documents (sender);
CREATE TABLE links (
	name VARCHAR(120) NOT NULL, 
	prefix VARCHAR(200) NOT NULL, 
	role VARCHAR(10) NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	broker_user VARCHAR(200) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (name)
);
CREATE TABLE outbox (
	id INTEGER NOT NULL, 
	message_id VARCHAR(128) NOT NULL, 
	kind VARCHAR(20) NOT NULL, 
	exchange VARCHAR(60) NOT NULL, 
	routing_key VARCHAR(220) NOT NULL, 
	body BLOB, 
	recipient VARCHAR(200) NOT NULL, 
	created_at DATETIME NOT NULL, 
	published_at DATETIME, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_outbox_message_id ON outbox (message_id);
CREATE INDEX ix_outbox_published_at ON outbox (published_at);
CREATE TABLE receipts (
	id INTEGER NOT NULL, 
	message_id VARCHAR(64) NOT NULL, 
	recipient VARCHAR(200) NOT NULL, 
	event VARCHAR(20) NOT NULL, 
	reason TEXT NOT NULL, 
	at DATETIME NOT NULL, 
	received_at DATETIME NOT NULL, 
	der BLOB NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (message_id, recipient, event)
);
CREATE INDEX ix_receipts_message_id ON receipts (message_id);
CREATE TABLE rejections (
	id INTEGER NOT NULL, 
	message_id VARCHAR(128) NOT NULL, 
	sender VARCHAR(200) NOT NULL, 
	code VARCHAR(40) NOT NULL, 
	message TEXT NOT NULL, 
	kept_at TEXT NOT NULL, 
	at DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE INDEX ix_rejections_at ON rejections (at);
CREATE INDEX ix_rejections_code ON rejections (code);
CREATE INDEX ix_rejections_message_id ON rejections (message_id);
CREATE TABLE settings (
	"key" VARCHAR(80) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE units (
	address VARCHAR(200) NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	kind VARCHAR(40) NOT NULL, 
	building VARCHAR(60) NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	phase VARCHAR(20) NOT NULL, 
	sign_cert TEXT NOT NULL, 
	enc_cert TEXT NOT NULL, 
	seal_png BLOB, 
	broker_user VARCHAR(200) NOT NULL, 
	cert_not_after DATETIME, 
	created_at DATETIME NOT NULL, 
	last_seen DATETIME, 
	PRIMARY KEY (address)
);
CREATE TABLE deliveries (
	id INTEGER NOT NULL, 
	message_id VARCHAR(64) NOT NULL, 
	recipient VARCHAR(200) NOT NULL, 
	route VARCHAR(120) NOT NULL, 
	state VARCHAR(20) NOT NULL, 
	code VARCHAR(40) NOT NULL, 
	reason TEXT NOT NULL, 
	person VARCHAR(120) NOT NULL, 
	accepted_at DATETIME, 
	routed_at DATETIME, 
	delivered_at DATETIME, 
	signed_for_at DATETIME, 
	returned_at DATETIME, 
	closed_at DATETIME, 
	reminders INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(message_id) REFERENCES documents (message_id), 
	UNIQUE (message_id, recipient)
);
CREATE INDEX ix_deliveries_message_id ON deliveries (message_id);
CREATE INDEX ix_deliveries_recipient_state ON deliveries (recipient, state);
CREATE INDEX ix_deliveries_state ON deliveries (state);
CREATE TABLE envelopes (
	message_id VARCHAR(64) NOT NULL, 
	data BLOB NOT NULL, 
	PRIMARY KEY (message_id), 
	FOREIGN KEY(message_id) REFERENCES documents (message_id)
);
CREATE TABLE remote_directories (
	prefix VARCHAR(200) NOT NULL, 
	version INTEGER NOT NULL, 
	link VARCHAR(120) NOT NULL, 
	units INTEGER NOT NULL, 
	der BLOB NOT NULL, 
	received_at DATETIME NOT NULL, 
	PRIMARY KEY (prefix)
);
