/*
 * matviews_changes: the statement trigger of matviews' change tracking
 * (refresh_when = "changed", refresh --if-changed), in C.
 *
 * It records what the PL/pgSQL function matviews_note_change() records, one
 * row (table, top-level transaction's xid8) in matviews_table_changes, but
 * inserts the row directly (heap insert, then each index), with no SPI and
 * no executor: that is most of what the PL/pgSQL trigger costs a writer.
 * The change table is the one in the schema of this function (the schema
 * the extension was created in, matviews' catalog schema), looked up by
 * name on each call, so a dropped and re-created table is found again.
 * A transaction that writes a table in several statements records it once:
 * the tables recorded by the current transaction are remembered here, each
 * with the subtransaction that inserted its row, and forgotten when that
 * subtransaction (or one above it) rolls back, so a write after a rollback
 * to a savepoint records the table again. A new transaction id, another
 * change table or another file of it (TRUNCATE) starts afresh.
 * A change table that is not the plain one this code knows (other columns,
 * a trigger, a rule, row security, an index on an expression, a partial
 * one, an exclusion constraint, another table access method) gets the row
 * through an ordinary INSERT (SPI) instead, as its owner.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_class_d.h"
#include "catalog/pg_type_d.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/execnodes.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/xid8.h"

PG_MODULE_MAGIC;

#define CHANGE_TABLE "matviews_table_changes"

PG_FUNCTION_INFO_V1(matviews_note_change_c);

/* The tables the current transaction has recorded (at most SEEN_MAX; more
 * are recorded again on each statement, as the PL/pgSQL function does). */
#define SEEN_MAX 64
typedef struct Seen
{
	Oid			relid;
	SubTransactionId subid;		/* the subtransaction that inserted the row */
} Seen;
static FullTransactionId seen_xact;
static Oid	seen_table = InvalidOid;
static Oid	seen_file = InvalidOid;
static Seen seen[SEEN_MAX];
static int	nseen = 0;
static bool subxact_callback = false;

/* A subtransaction that rolls back takes its rows, and those of the
 * subtransactions under it (every one started after it), with it. */
static void
forget_rolled_back(SubXactEvent event, SubTransactionId mySubid,
				   SubTransactionId parentSubid, void *arg)
{
	int			i,
				kept = 0;

	(void) parentSubid;
	(void) arg;
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	for (i = 0; i < nseen; i++)
		if (seen[i].subid < mySubid)
			seen[kept++] = seen[i];
	nseen = kept;
}

/* Whether the current transaction has recorded relid in the change table
 * rel; forgets what it knew when the transaction or the table changed. */
static bool
recorded(Relation rel, FullTransactionId fxid, Oid relid)
{
	int			i;

	if (!FullTransactionIdEquals(fxid, seen_xact) || RelationGetRelid(rel) != seen_table ||
		rel->rd_node.relNode != seen_file)
	{
		seen_xact = fxid;
		seen_table = RelationGetRelid(rel);
		seen_file = rel->rd_node.relNode;
		nseen = 0;
		return false;
	}
	for (i = 0; i < nseen; i++)
		if (seen[i].relid == relid)
			return true;
	return false;
}

static void
remember(Oid relid)
{
	if (!subxact_callback)
	{
		RegisterSubXactCallback(forget_rolled_back, NULL);
		subxact_callback = true;
	}
	if (nseen < SEEN_MAX)
	{
		seen[nseen].relid = relid;
		seen[nseen].subid = GetCurrentSubTransactionId();
		nseen++;
	}
}

/* Whether rel is the plain change table: columns (relid oid, xid xid8), a
 * heap, nothing that an INSERT would run besides its indexes. */
static bool
plain_change_table(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Form_pg_attribute a0,
				a1;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relam != HEAP_TABLE_AM_OID)
		return false;
	if (rel->trigdesc != NULL || rel->rd_rules != NULL || rel->rd_rel->relrowsecurity)
		return false;
	if (desc->natts != 2 || (desc->constr != NULL && desc->constr->num_check > 0))
		return false;
	a0 = TupleDescAttr(desc, 0);
	a1 = TupleDescAttr(desc, 1);
	if (a0->attisdropped || a1->attisdropped || a0->atttypid != OIDOID || a1->atttypid != XID8OID)
		return false;
	if (strcmp(NameStr(a0->attname), "relid") != 0 || strcmp(NameStr(a1->attname), "xid") != 0)
		return false;
	return true;
}

/* Whether index can be maintained by hand: plain columns, no predicate, no
 * exclusion constraint, no deferred uniqueness. */
static bool
plain_index(Relation index, IndexInfo *info)
{
	return info->ii_Expressions == NIL && info->ii_Predicate == NIL &&
		info->ii_ExclusionOps == NULL &&
		(!index->rd_index->indisunique || index->rd_index->indimmediate);
}

/* The row through an ordinary INSERT, as the change table's owner. */
static void
insert_by_spi(Oid nsp, Oid owner, Oid relid, FullTransactionId fxid)
{
	Oid			argtypes[2] = {OIDOID, XID8OID};
	Datum		args[2];
	char	   *sql;
	Oid			save_user;
	int			save_sec;

	args[0] = ObjectIdGetDatum(relid);
	args[1] = FullTransactionIdGetDatum(fxid);
	sql = psprintf("INSERT INTO %s.%s (relid, xid) VALUES ($1, $2)",
				   quote_identifier(get_namespace_name(nsp)), CHANGE_TABLE);
	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "matviews_note_change_c: SPI_connect failed");
	if (SPI_execute_with_args(sql, 2, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "matviews_note_change_c: the insert into %s failed", CHANGE_TABLE);
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
}

Datum
matviews_note_change_c(PG_FUNCTION_ARGS)
{
	TriggerData *trig = (TriggerData *) fcinfo->context;
	Oid			nsp,
				changes;
	Relation	rel;
	FullTransactionId fxid;
	Datum		values[2];
	bool		nulls[2] = {false, false};
	bool		plain;
	List	   *indexes;
	ListCell   *lc;
	int			nindexes,
				i;
	Relation   *rels;
	IndexInfo **infos;
	Oid			owner;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("matviews_note_change_c: not called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(trig->tg_event) || !TRIGGER_FIRED_FOR_STATEMENT(trig->tg_event))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("matviews_note_change_c: must be an AFTER ... FOR EACH STATEMENT trigger")));

	/* the top-level transaction, also from a subtransaction (a savepoint) */
	fxid = GetTopFullTransactionId();
	values[0] = ObjectIdGetDatum(RelationGetRelid(trig->tg_relation));
	values[1] = FullTransactionIdGetDatum(fxid);

	nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	changes = OidIsValid(nsp) ? get_relname_relid(CHANGE_TABLE, nsp) : InvalidOid;
	if (!OidIsValid(changes))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
						errmsg("matviews_note_change_c: no table %s in the schema of the function", CHANGE_TABLE)));

	rel = table_open(changes, RowExclusiveLock);
	if (recorded(rel, fxid, RelationGetRelid(trig->tg_relation)))
	{
		table_close(rel, NoLock);
		return PointerGetDatum(NULL);
	}
	plain = plain_change_table(rel);

	/* open and check every index before touching anything */
	indexes = plain ? RelationGetIndexList(rel) : NIL;
	nindexes = list_length(indexes);
	rels = (Relation *) palloc(sizeof(Relation) * (nindexes + 1));
	infos = (IndexInfo **) palloc(sizeof(IndexInfo *) * (nindexes + 1));
	i = 0;
	foreach(lc, indexes)
	{
		rels[i] = index_open(lfirst_oid(lc), RowExclusiveLock);
		infos[i] = BuildIndexInfo(rels[i]);
		if (!plain_index(rels[i], infos[i]))
			plain = false;
		i++;
	}

	if (plain)
	{
		HeapTuple	tup = heap_form_tuple(RelationGetDescr(rel), values, nulls);

		simple_heap_insert(rel, tup);
		for (i = 0; i < nindexes; i++)
		{
			Datum		ivalues[INDEX_MAX_KEYS];
			bool		inulls[INDEX_MAX_KEYS];
			int			k;

			if (!infos[i]->ii_ReadyForInserts)
				continue;
			for (k = 0; k < infos[i]->ii_NumIndexAttrs; k++)
			{
				AttrNumber	att = infos[i]->ii_IndexAttrNumbers[k];

				if (att < 1 || att > 2)
					elog(ERROR, "matviews_note_change_c: unexpected index column %d", att);
				ivalues[k] = values[att - 1];
				inulls[k] = false;
			}
			index_insert(rels[i], ivalues, inulls, &tup->t_self, rel,
						 rels[i]->rd_index->indisunique ? UNIQUE_CHECK_YES : UNIQUE_CHECK_NO,
						 false, infos[i]);
		}
		heap_freetuple(tup);
	}
	for (i = 0; i < nindexes; i++)
		index_close(rels[i], NoLock);
	pfree(rels);
	pfree(infos);
	list_free(indexes);
	owner = rel->rd_rel->relowner;
	table_close(rel, NoLock);
	if (!plain)
		insert_by_spi(nsp, owner, RelationGetRelid(trig->tg_relation), fxid);
	remember(RelationGetRelid(trig->tg_relation));
	return PointerGetDatum(NULL);
}
