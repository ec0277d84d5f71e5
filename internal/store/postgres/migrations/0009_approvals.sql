-- decisions: what people decided about a deployment: approve, reject, or
-- (an admin) override-freeze. One verdict per user per deployment. A
-- decision names a deployment, so it holds for that release only.
CREATE TABLE decisions (
	id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	deployment_id bigint      NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
	user_name     text        NOT NULL,
	verdict       text        NOT NULL,
	comment       text        NOT NULL,
	created_at    timestamptz NOT NULL,
	UNIQUE (deployment_id, user_name, verdict)
);
