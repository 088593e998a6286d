-- docex hub tracking store at commit a509041 (alembic revision 0002), PostgreSQL 15; made by running
-- that commit's own migrations and pg_dump --schema-only --no-owner --no-privileges (psql meta-commands removed)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

CREATE TABLE public.alembic_version (
    version_num character varying(32) NOT NULL
);

CREATE TABLE public.audit (
    id integer NOT NULL,
    at timestamp with time zone NOT NULL,
    actor character varying(200) NOT NULL,
    action character varying(60) NOT NULL,
    subject character varying(200) NOT NULL,
    detail text NOT NULL,
    prev_hash character varying(64) NOT NULL,
    hash character varying(64) NOT NULL
);

CREATE SEQUENCE public.audit_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.audit_id_seq OWNED BY public.audit.id;

CREATE TABLE public.deliveries (
    id integer NOT NULL,
    message_id character varying(64) NOT NULL,
    recipient character varying(200) NOT NULL,
    route character varying(120) NOT NULL,
    state character varying(20) NOT NULL,
    code character varying(40) NOT NULL,
    reason text NOT NULL,
    person character varying(120) NOT NULL,
    accepted_at timestamp with time zone,
    routed_at timestamp with time zone,
    delivered_at timestamp with time zone,
    signed_for_at timestamp with time zone,
    returned_at timestamp with time zone,
    closed_at timestamp with time zone,
    reminders integer NOT NULL
);

CREATE SEQUENCE public.deliveries_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.deliveries_id_seq OWNED BY public.deliveries.id;

CREATE TABLE public.documents (
    message_id character varying(64) NOT NULL,
    sender character varying(200) NOT NULL,
    title text NOT NULL,
    doc_number character varying(120) NOT NULL,
    priority character varying(10) NOT NULL,
    classification character varying(10) NOT NULL,
    size integer NOT NULL,
    envelope_sha256 character varying(64) NOT NULL,
    origin character varying(120) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    accepted_at timestamp with time zone NOT NULL,
    deadline timestamp with time zone
);

CREATE TABLE public.envelopes (
    message_id character varying(64) NOT NULL,
    data bytea NOT NULL
);

CREATE TABLE public.links (
    name character varying(120) NOT NULL,
    prefix character varying(200) NOT NULL,
    role character varying(10) NOT NULL,
    state character varying(20) NOT NULL,
    broker_user character varying(200) NOT NULL,
    created_at timestamp with time zone NOT NULL
);

CREATE TABLE public.outbox (
    id integer NOT NULL,
    message_id character varying(128) NOT NULL,
    kind character varying(20) NOT NULL,
    exchange character varying(60) NOT NULL,
    routing_key character varying(220) NOT NULL,
    body bytea,
    recipient character varying(200) NOT NULL,
    created_at timestamp with time zone NOT NULL,
    published_at timestamp with time zone
);

CREATE SEQUENCE public.outbox_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.outbox_id_seq OWNED BY public.outbox.id;

CREATE TABLE public.receipts (
    id integer NOT NULL,
    message_id character varying(64) NOT NULL,
    recipient character varying(200) NOT NULL,
    event character varying(20) NOT NULL,
    reason text NOT NULL,
    at timestamp with time zone NOT NULL,
    received_at timestamp with time zone NOT NULL,
    der bytea NOT NULL
);

CREATE SEQUENCE public.receipts_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.receipts_id_seq OWNED BY public.receipts.id;

CREATE TABLE public.rejections (
    id integer NOT NULL,
    message_id character varying(128) NOT NULL,
    sender character varying(200) NOT NULL,
    code character varying(40) NOT NULL,
    message text NOT NULL,
    kept_at text NOT NULL,
    at timestamp with time zone NOT NULL
);

CREATE SEQUENCE public.rejections_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;

ALTER SEQUENCE public.rejections_id_seq OWNED BY public.rejections.id;

CREATE TABLE public.remote_directories (
    prefix character varying(200) NOT NULL,
    version integer NOT NULL,
    link character varying(120) NOT NULL,
    units integer NOT NULL,
    der bytea NOT NULL,
    received_at timestamp with time zone NOT NULL
);

CREATE TABLE public.settings (
    key character varying(80) NOT NULL,
    value text NOT NULL
);

CREATE TABLE public.units (
    address character varying(200) NOT NULL,
    name character varying(200) NOT NULL,
    kind character varying(40) NOT NULL,
    building character varying(60) NOT NULL,
    state character varying(20) NOT NULL,
    phase character varying(20) NOT NULL,
    sign_cert text NOT NULL,
    enc_cert text NOT NULL,
    seal_png bytea,
    broker_user character varying(200) NOT NULL,
    cert_not_after timestamp with time zone,
    created_at timestamp with time zone NOT NULL,
    last_seen timestamp with time zone
);

ALTER TABLE ONLY public.audit ALTER COLUMN id SET DEFAULT nextval('public.audit_id_seq'::regclass);

ALTER TABLE ONLY public.deliveries ALTER COLUMN id SET DEFAULT nextval('public.deliveries_id_seq'::regclass);

ALTER TABLE ONLY public.outbox ALTER COLUMN id SET DEFAULT nextval('public.outbox_id_seq'::regclass);

ALTER TABLE ONLY public.receipts ALTER COLUMN id SET DEFAULT nextval('public.receipts_id_seq'::regclass);

ALTER TABLE ONLY public.rejections ALTER COLUMN id SET DEFAULT nextval('public.rejections_id_seq'::regclass);

ALTER TABLE ONLY public.alembic_version
    ADD CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num);

ALTER TABLE ONLY public.audit
    ADD CONSTRAINT audit_hash_key UNIQUE (hash);

ALTER TABLE ONLY public.audit
    ADD CONSTRAINT audit_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_message_id_recipient_key UNIQUE (message_id, recipient);

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.documents
    ADD CONSTRAINT documents_pkey PRIMARY KEY (message_id);

ALTER TABLE ONLY public.envelopes
    ADD CONSTRAINT envelopes_pkey PRIMARY KEY (message_id);

ALTER TABLE ONLY public.links
    ADD CONSTRAINT links_pkey PRIMARY KEY (name);

ALTER TABLE ONLY public.outbox
    ADD CONSTRAINT outbox_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.receipts
    ADD CONSTRAINT receipts_message_id_recipient_event_key UNIQUE (message_id, recipient, event);

ALTER TABLE ONLY public.receipts
    ADD CONSTRAINT receipts_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.rejections
    ADD CONSTRAINT rejections_pkey PRIMARY KEY (id);

ALTER TABLE ONLY public.remote_directories
    ADD CONSTRAINT remote_directories_pkey PRIMARY KEY (prefix);

ALTER TABLE ONLY public.settings
    ADD CONSTRAINT settings_pkey PRIMARY KEY (key);

ALTER TABLE ONLY public.units
    ADD CONSTRAINT units_pkey PRIMARY KEY (address);

CREATE INDEX ix_audit_action ON public.audit USING btree (action);

CREATE INDEX ix_audit_subject ON public.audit USING btree (subject);

CREATE INDEX ix_deliveries_message_id ON public.deliveries USING btree (message_id);

CREATE INDEX ix_deliveries_recipient_state ON public.deliveries USING btree (recipient, state);

CREATE INDEX ix_deliveries_state ON public.deliveries USING btree (state);

CREATE INDEX ix_documents_accepted_at ON public.documents USING btree (accepted_at);

CREATE INDEX ix_documents_doc_number ON public.documents USING btree (doc_number);

CREATE INDEX ix_documents_sender ON public.documents USING btree (sender);

CREATE INDEX ix_outbox_message_id ON public.outbox USING btree (message_id);

CREATE INDEX ix_outbox_published_at ON public.outbox USING btree (published_at);

CREATE INDEX ix_receipts_message_id ON public.receipts USING btree (message_id);

CREATE INDEX ix_rejections_at ON public.rejections USING btree (at);

CREATE INDEX ix_rejections_code ON public.rejections USING btree (code);

CREATE INDEX ix_rejections_message_id ON public.rejections USING btree (message_id);

ALTER TABLE ONLY public.deliveries
    ADD CONSTRAINT deliveries_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.documents(message_id);

ALTER TABLE ONLY public.envelopes
    ADD CONSTRAINT envelopes_message_id_fkey FOREIGN KEY (message_id) REFERENCES public.documents(message_id);

