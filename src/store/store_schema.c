/*
 * store_schema.c - forward migrations, one SQL script per schema version.
 *
 * store_open() runs store_migrations[v] for every v >= PRAGMA user_version,
 * each in its own transaction together with the user_version bump, so a
 * database is always at exactly one version. Never edit a released script:
 * add a new one.
 *
 * Version 1 also seeds the two default personas (Aria, Kira). Doing it in the
 * migration means they are inserted exactly once in the life of a database,
 * never duplicated and never re-created after a user deletes them (spec §12
 * item 22). `seq` is an INTEGER PRIMARY KEY so list order is insertion order
 * and survives VACUUM (item 19).
 */
#include "store/store.h"

#define UUID4_SQL                                                                                  \
    "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' ||"                    \
    " substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) "  \
    "||"                                                                                           \
    " substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))"
#define NOW_SQL "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')"

#define SCHEMA_V1_TABLES                                                                           \
    "CREATE TABLE personas ("                                                                      \
    "  seq INTEGER PRIMARY KEY,"                                                                   \
    "  id TEXT NOT NULL UNIQUE,"                                                                   \
    "  name TEXT NOT NULL CHECK (length(name) > 0),"                                               \
    "  description TEXT NOT NULL DEFAULT '',"                                                      \
    "  personality_traits TEXT NOT NULL DEFAULT '{}',"                                             \
    "  topic_preferences TEXT NOT NULL DEFAULT '{}',"                                              \
    "  charisma INTEGER NOT NULL DEFAULT 10 CHECK (charisma BETWEEN 1 AND 20),"                    \
    "  intelligence INTEGER NOT NULL DEFAULT 10 CHECK (intelligence BETWEEN 1 AND 20),"            \
    "  social_rank TEXT NOT NULL DEFAULT 'commoner',"                                              \
    "  created_at TEXT NOT NULL"                                                                   \
    ");"                                                                                           \
    "CREATE INDEX personas_name_nocase ON personas (name COLLATE NOCASE);"                         \
    "CREATE TABLE persona_interaction_states ("                                                    \
    "  persona_id TEXT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,"                    \
    "  interest_level INTEGER NOT NULL DEFAULT 50,"                                                \
    "  interaction_fatigue INTEGER NOT NULL DEFAULT 0,"                                            \
    "  current_priority TEXT NOT NULL DEFAULT 'none',"                                             \
    "  available_time INTEGER NOT NULL DEFAULT 300,"                                               \
    "  social_energy INTEGER NOT NULL DEFAULT 100,"                                                \
    "  cooldown_until REAL NOT NULL DEFAULT 0,"                                                    \
    "  last_updated TEXT NOT NULL"                                                                 \
    ");"                                                                                           \
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"

/* The seed half of version 1: the default personas, inserted once. */
#define SCHEMA_V1_SEED                                                                             \
    "CREATE TEMP TABLE seed (name, description, traits, topics, charisma, intelligence, rank,"     \
    "  priority, energy, available);"                                                              \
    "INSERT INTO seed VALUES ('Aria', 'A vibrant elven bard with sparkling eyes and an infectious" \
    " laugh. She loves stories, music, and meeting new people.',"                                  \
    " '{\"extroverted\":90,\"creative\":85,\"empathetic\":80,\"curious\":75,\"optimistic\":85}',"  \
    " '{\"music\":95,\"stories\":90,\"travel\":85,\"gossip\":80,\"magic\":70,\"adventure\":85,"    \
    "\"art\":80,\"local_news\":75}', 18, 14, 'performer', 'social', 150, 600);"                    \
    "INSERT INTO seed VALUES ('Kira', 'A brilliant human scholar with keen analytical mind. She"   \
    " prefers deep conversations about knowledge and discovery.',"                                 \
    " '{\"introverted\":70,\"analytical\":95,\"focused\":90,\"methodical\":85,\"reserved\":75}',"  \
    " '{\"research\":95,\"magic\":90,\"history\":85,\"philosophy\":80,\"books\":85,"               \
    "\"discovery\":90,\"gossip\":20,\"small_talk\":25}', 12, 18, 'scholar', 'academic', 80, 300);" \
    "INSERT INTO personas (id, name, description, personality_traits, topic_preferences, "         \
    "charisma,"                                                                                    \
    "  intelligence, social_rank, created_at)"                                                     \
    "  SELECT " UUID4_SQL                                                                          \
    ", name, description, traits, topics, charisma, intelligence, rank, " NOW_SQL                  \
    "  FROM seed ORDER BY rowid;"                                                                  \
    "INSERT INTO persona_interaction_states (persona_id, current_priority, social_energy,"         \
    "  available_time, last_updated)"                                                              \
    "  SELECT p.id, s.priority, s.energy, s.available, " NOW_SQL                                   \
    "  FROM seed s JOIN personas p ON p.name = s.name;"                                            \
    "DROP TABLE seed;"                                                                             \
    "INSERT INTO meta VALUES ('seeded_at', " NOW_SQL ");"

static const char schema_v1[] = SCHEMA_V1_TABLES SCHEMA_V1_SEED;
const char store_schema_v1_tables[] = SCHEMA_V1_TABLES;
const char store_seed_sql[] = SCHEMA_V1_SEED;

/* Version 2: vector memory. SQLite is the store of record for memories:
 * text, ranking fields, metadata and the embedding BLOB (float32, little
 * endian). `importance` is the current (decayed) value, `base_importance`
 * what was stored, so decay never compounds. persona_id is any string
 * (spec §11: clients store under "aria"). An external-content FTS5 index
 * follows the table through triggers. `memory_collections` records which
 * embedder (model id and dimension) built each persona's vectors. Deleting
 * a persona removes its memories in the same transaction (trigger). */
static const char schema_v2[] =
    "CREATE TABLE memories ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  persona_id TEXT NOT NULL,"
    "  content TEXT NOT NULL,"
    "  content_hash INTEGER NOT NULL,"
    "  memory_type TEXT NOT NULL,"
    "  importance REAL NOT NULL CHECK (importance BETWEEN 0 AND 1),"
    "  base_importance REAL NOT NULL CHECK (base_importance BETWEEN 0 AND 1),"
    "  emotional_valence REAL NOT NULL DEFAULT 0 CHECK (emotional_valence BETWEEN -1 AND 1),"
    "  related_personas TEXT NOT NULL DEFAULT '[]',"
    "  visibility TEXT NOT NULL DEFAULT 'private'"
    "    CHECK (visibility IN ('private', 'shared', 'public')),"
    "  metadata TEXT NOT NULL DEFAULT '{}',"
    "  created_at REAL NOT NULL,"
    "  accessed_count INTEGER NOT NULL DEFAULT 0,"
    "  last_accessed REAL,"
    "  embedding BLOB NOT NULL"
    ");"
    "CREATE INDEX memories_persona ON memories (persona_id, seq);"
    "CREATE INDEX memories_hash ON memories (persona_id, content_hash);"
    "CREATE INDEX memories_visibility ON memories (visibility, persona_id)"
    "  WHERE visibility <> 'private';"
    "CREATE TABLE memory_collections ("
    "  persona_id TEXT PRIMARY KEY,"
    "  model TEXT NOT NULL,"
    "  dim INTEGER NOT NULL CHECK (dim > 0)"
    ");"
    "CREATE VIRTUAL TABLE memories_fts USING fts5 (content, content = 'memories',"
    "  content_rowid = 'seq');"
    "CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN"
    "  INSERT INTO memories_fts (rowid, content) VALUES (new.seq, new.content);"
    "END;"
    "CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN"
    "  INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.seq,"
    "  old.content);"
    "END;"
    "CREATE TRIGGER memories_au AFTER UPDATE OF content ON memories BEGIN"
    "  INSERT INTO memories_fts (memories_fts, rowid, content) VALUES ('delete', old.seq,"
    "  old.content);"
    "  INSERT INTO memories_fts (rowid, content) VALUES (new.seq, new.content);"
    "END;"
    "CREATE TRIGGER personas_cascade_memories AFTER DELETE ON personas BEGIN"
    "  DELETE FROM memories WHERE persona_id = old.id;"
    "  DELETE FROM memory_collections WHERE persona_id = old.id;"
    "END;";

/* Version 3: conversations. A user chat (persona protocol persona.chat) is a
 * conversation of kind 'user' per connection and persona; the persona-to-
 * persona engine's are kind 'persona'. Turns cascade with their
 * conversation, and conversations with any of their participants. */
static const char schema_v3[] =
    "CREATE TABLE conversations ("
    "  id TEXT PRIMARY KEY,"
    "  kind TEXT NOT NULL CHECK (kind IN ('user', 'persona')),"
    "  participants TEXT NOT NULL,"
    "  topic TEXT NOT NULL DEFAULT 'general',"
    "  topic_drift_count INTEGER NOT NULL DEFAULT 0,"
    "  duration INTEGER NOT NULL DEFAULT 0,"
    "  token_budget INTEGER NOT NULL DEFAULT 1000,"
    "  tokens_used INTEGER NOT NULL DEFAULT 0,"
    "  continue_score INTEGER NOT NULL DEFAULT 50,"
    "  score_history TEXT NOT NULL DEFAULT '[]',"
    "  turn_count INTEGER NOT NULL DEFAULT 0,"
    "  started_at REAL NOT NULL,"
    "  ended_at REAL,"
    "  exit_reason TEXT"
    ");"
    "CREATE TABLE conversation_turns ("
    "  seq INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,"
    "  speaker_id TEXT NOT NULL,"
    "  turn_number INTEGER NOT NULL,"
    "  content TEXT NOT NULL,"
    "  response_type TEXT NOT NULL DEFAULT 'direct',"
    "  continue_score INTEGER NOT NULL DEFAULT 50,"
    "  tokens_used INTEGER NOT NULL DEFAULT 0,"
    "  processing_time REAL NOT NULL DEFAULT 0,"
    "  created_at REAL NOT NULL"
    ");"
    "CREATE INDEX conversation_turns_conv ON conversation_turns (conversation_id, turn_number);"
    "CREATE TRIGGER personas_cascade_conversations AFTER DELETE ON personas BEGIN"
    "  DELETE FROM conversations WHERE EXISTS"
    "    (SELECT 1 FROM json_each(conversations.participants) WHERE value = old.id);"
    "END;";

/* Version 4: relationships and emotional state (spec §5.1 "Recommended
 * unified schema", §12 item 18), written only by src/social. One scale per
 * field: affinity, trust, respect and intimacy are all in [0, 1] with 0.5
 * for a new pair (the algorithm of relationship.update, §6.8.2). A pair is
 * stored once, in canonical order (persona1_id < persona2_id), so UNIQUE
 * (persona1_id, persona2_id) makes it one row whichever way it is asked.
 * interaction_history keeps the caller's order (persona1 = initiator).
 * Every foreign key is indexed. Deleting a persona removes its
 * relationships, history and emotional state in the same transaction: by
 * ON DELETE CASCADE and, should foreign keys ever be off on a connection,
 * by the trigger (spec issue 6 item 6). */
static const char schema_v4[] =
    "CREATE TABLE relationships ("
    "  id TEXT PRIMARY KEY,"
    "  persona1_id TEXT NOT NULL REFERENCES personas (id) ON DELETE CASCADE,"
    "  persona2_id TEXT NOT NULL REFERENCES personas (id) ON DELETE CASCADE,"
    "  affinity REAL NOT NULL DEFAULT 0.5 CHECK (affinity BETWEEN 0 AND 1),"
    "  trust REAL NOT NULL DEFAULT 0.5 CHECK (trust BETWEEN 0 AND 1),"
    "  respect REAL NOT NULL DEFAULT 0.5 CHECK (respect BETWEEN 0 AND 1),"
    "  intimacy REAL NOT NULL DEFAULT 0.5 CHECK (intimacy BETWEEN 0 AND 1),"
    "  relationship_type TEXT NOT NULL DEFAULT 'stranger' CHECK (relationship_type IN"
    "    ('stranger', 'acquaintance', 'friend', 'close_friend', 'rival', 'enemy', 'mentor',"
    "     'student', 'romantic', 'family')),"
    "  interaction_count INTEGER NOT NULL DEFAULT 0 CHECK (interaction_count >= 0),"
    "  total_interaction_time REAL NOT NULL DEFAULT 0 CHECK (total_interaction_time >= 0),"
    "  recent_interaction_quality REAL NOT NULL DEFAULT 0"
    "    CHECK (recent_interaction_quality BETWEEN -1 AND 1),"
    "  first_meeting TEXT NOT NULL,"
    "  last_interaction TEXT,"
    "  shared_experiences TEXT NOT NULL DEFAULT '[]',"
    "  created_at TEXT NOT NULL,"
    "  updated_at TEXT NOT NULL,"
    "  CHECK (persona1_id < persona2_id),"
    "  UNIQUE (persona1_id, persona2_id)"
    ");"
    "CREATE INDEX relationships_persona2 ON relationships (persona2_id);"
    "CREATE TABLE emotional_states ("
    "  persona_id TEXT PRIMARY KEY REFERENCES personas (id) ON DELETE CASCADE,"
    "  mood REAL NOT NULL DEFAULT 0.5 CHECK (mood BETWEEN -1 AND 1),"
    "  energy_level REAL NOT NULL DEFAULT 0.7 CHECK (energy_level BETWEEN 0 AND 1),"
    "  stress_level REAL NOT NULL DEFAULT 0.3 CHECK (stress_level BETWEEN 0 AND 1),"
    "  curiosity REAL NOT NULL DEFAULT 0.6 CHECK (curiosity BETWEEN 0 AND 1),"
    "  social_battery REAL NOT NULL DEFAULT 0.8 CHECK (social_battery BETWEEN 0 AND 1),"
    "  last_updated TEXT NOT NULL,"
    "  created_at TEXT NOT NULL"
    ");"
    "CREATE TABLE interaction_history ("
    "  id INTEGER PRIMARY KEY,"
    "  persona1_id TEXT NOT NULL REFERENCES personas (id) ON DELETE CASCADE,"
    "  persona2_id TEXT NOT NULL REFERENCES personas (id) ON DELETE CASCADE,"
    "  interaction_quality REAL NOT NULL CHECK (interaction_quality BETWEEN -1 AND 1),"
    "  duration_minutes REAL NOT NULL DEFAULT 5.0 CHECK (duration_minutes >= 0),"
    "  context TEXT NOT NULL DEFAULT 'conversation',"
    "  emotional_impact TEXT NOT NULL DEFAULT '{}',"
    "  memory_references TEXT NOT NULL DEFAULT '[]',"
    "  timestamp TEXT NOT NULL"
    ");"
    "CREATE INDEX interaction_history_pair ON interaction_history"
    "  (persona1_id, persona2_id, timestamp);"
    "CREATE INDEX interaction_history_persona2 ON interaction_history (persona2_id);"
    "CREATE TRIGGER personas_cascade_social AFTER DELETE ON personas BEGIN"
    "  DELETE FROM relationships WHERE persona1_id = old.id OR persona2_id = old.id;"
    "  DELETE FROM interaction_history WHERE persona1_id = old.id OR persona2_id = old.id;"
    "  DELETE FROM emotional_states WHERE persona_id = old.id;"
    "END;";

/* Version 5: two costs leave the commit path. The index on
 * (persona_id, content_hash) goes: it put each new row at a random place,
 * one more dirty page per stored memory; duplicates are now found through
 * per-persona tables on the writer (src/memory/mem_dedup.c), loaded from
 * memories_persona, which gains content_hash (still append-only). And
 * full-text indexing leaves the commit path. An insert (or a
 * content update) now only queues the row's seq in memories_fts_pending, a
 * plain append; src/memory/mem_fts.c indexes the queue in bulk on the writer
 * thread (every 1,024 rows, on the access-flush timer, and before any FTS
 * query), where FTS5 costs ~6 us a row instead of ~40 us for one row per
 * trigger. A row still queued was never indexed, so deleting or changing it
 * must not issue FTS5's 'delete' (that would corrupt the index); the
 * triggers tell the two cases apart. The name starts with "memories_fts_",
 * so state files skip the queue like the index's own shadow tables; the
 * import's inserts queue their rows again. */
static const char schema_v5[] =
    "DROP INDEX memories_hash;"
    "DROP INDEX memories_persona;"
    "CREATE INDEX memories_persona ON memories (persona_id, seq, content_hash);"
    "CREATE TABLE memories_fts_pending (seq INTEGER PRIMARY KEY);"
    "DROP TRIGGER memories_ai;"
    "DROP TRIGGER memories_ad;"
    "DROP TRIGGER memories_au;"
    "CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN"
    "  INSERT OR IGNORE INTO memories_fts_pending (seq) VALUES (new.seq);"
    "END;"
    "CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN"
    "  INSERT INTO memories_fts (memories_fts, rowid, content)"
    "    SELECT 'delete', old.seq, old.content"
    "    WHERE NOT EXISTS (SELECT 1 FROM memories_fts_pending WHERE seq = old.seq);"
    "  DELETE FROM memories_fts_pending WHERE seq = old.seq;"
    "END;"
    "CREATE TRIGGER memories_au AFTER UPDATE OF content ON memories BEGIN"
    "  INSERT INTO memories_fts (memories_fts, rowid, content)"
    "    SELECT 'delete', old.seq, old.content"
    "    WHERE NOT EXISTS (SELECT 1 FROM memories_fts_pending WHERE seq = old.seq);"
    "  INSERT OR IGNORE INTO memories_fts_pending (seq) VALUES (new.seq);"
    "END;";

const char store_fts_index_pending[] =
    "INSERT INTO memories_fts (rowid, content) SELECT m.seq, m.content"
    " FROM memories_fts_pending AS p JOIN memories AS m ON m.seq = p.seq";
const char store_fts_clear_pending[] = "DELETE FROM memories_fts_pending";

const char *const store_migrations[] = {schema_v1, schema_v2, schema_v3, schema_v4, schema_v5};
const int store_schema_version = (int)(sizeof store_migrations / sizeof store_migrations[0]);
