-- session_janitor migration 1: the schema and its version table
CREATE SCHEMA IF NOT EXISTS "session_janitor";
CREATE TABLE IF NOT EXISTS "session_janitor".migration (
  version    integer     PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);
