package wasmgate

//go:wasmimport wasmgate:gateway/groups@0.1.0 join
func groupsJoin(groupPtr, groupLen, idPtr, idLen, ret uint32)

//go:wasmimport wasmgate:gateway/groups@0.1.0 leave
func groupsLeave(groupPtr, groupLen, idPtr, idLen, ret uint32)

//go:wasmimport wasmgate:gateway/groups@0.1.0 members
func groupsMembers(groupPtr, groupLen, ret uint32)

//go:wasmimport wasmgate:gateway/groups@0.1.0 members-page
func groupsMembersPage(groupPtr, groupLen, cursorTag, cursorPtr, cursorLen, limit, ret uint32)

//go:wasmimport wasmgate:gateway/groups@0.1.0 groups-of
func groupsOf(idPtr, idLen, ret uint32)

//go:wasmimport wasmgate:gateway/groups@0.1.0 broadcast
func groupsBroadcast(groupPtr, groupLen, tag, dataPtr, dataLen, exceptTag, exceptPtr, exceptLen, ret uint32)

// Groups are named sets of the service's live connections: a connection
// leaves all of them when it ends.
var Groups groups

type groups struct{}

// Join adds live connection id to group.
func (groups) Join(group, id string) error {
	gp, gl := str(group)
	ip, il := str(id)
	groupsJoin(gp, gl, ip, il, retAddress())
	return failure(4)
}

// Leave takes connection id out of group; whether it was in.
func (groups) Leave(group, id string) (bool, error) {
	gp, gl := str(group)
	ip, il := str(id)
	groupsLeave(gp, gl, ip, il, retAddress())
	if err := failure(4); err != nil {
		return false, err
	}
	return retU8(4) != 0, nil
}

// Members lists the ids in group, sorted: at most the first 1000
// (MembersPage reads them all).
func (groups) Members(group string) ([]string, error) {
	gp, gl := str(group)
	groupsMembers(gp, gl, retAddress())
	if err := failure(4); err != nil {
		return nil, err
	}
	return stringList(retU32(4), retU32(8)), nil
}

// MembersPage lists up to limit (at most 1000) ids of group after cursor.
func (groups) MembersPage(group string, cursor *string, limit uint32) (Page, error) {
	gp, gl := str(group)
	ct, cp, cl := optional(cursor)
	groupsMembersPage(gp, gl, ct, cp, cl, limit, retAddress())
	if err := failure(4); err != nil {
		return Page{}, err
	}
	return Page{Keys: stringList(retU32(4), retU32(8)), Cursor: KV.page()}, nil
}

// Of lists the groups of live connection id, sorted.
func (groups) Of(id string) ([]string, error) {
	ip, il := str(id)
	groupsOf(ip, il, retAddress())
	if err := failure(4); err != nil {
		return nil, err
	}
	return stringList(retU32(4), retU32(8)), nil
}

// Broadcast queues message for every member of group but except (when not
// empty); how many connections it reached.
func (groups) Broadcast(group string, message Message, except string) (uint32, error) {
	gp, gl := str(group)
	dp, dl := bin(message.Data)
	var et, ep, el uint32
	if except != "" {
		et = 1
		ep, el = str(except)
	}
	groupsBroadcast(gp, gl, message.tag(), dp, dl, et, ep, el, retAddress())
	if err := failure(4); err != nil {
		return 0, err
	}
	return retU32(4), nil
}
