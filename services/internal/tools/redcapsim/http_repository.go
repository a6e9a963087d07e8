package redcapsim

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// The File Repository (content=fileRepository): createFolder, list,
// import, export and delete. Folders may be restricted to a DAG or a user
// role; a user in another DAG or role neither sees nor uses them.

// repoFolder is one File Repository folder.
type repoFolder struct {
	ID     int    `json:"id"`
	Name   string `json:"name"`
	Parent int    `json:"parent,omitempty"` // 0 = top level
	DAGID  int    `json:"dag_id,omitempty"`
	RoleID int    `json:"role_id,omitempty"`
}

func repoRights(api string) func(*call) error {
	feature := map[string]string{"api_export": "API Export", "api_import": "API Import/Update"}[api]
	return func(c *call) error {
		if !c.acc.can(api) || !c.acc.can("file_repository") {
			return needBoth(feature, "File Repository")
		}
		return nil
	}
}

func (p *project) folder(id int) *repoFolder {
	for _, f := range p.folders {
		if f.ID == id {
			return f
		}
	}
	return nil
}

// folderVisible: a folder (and every folder above it) is open to the user:
// no DAG restriction, or the user is in no DAG or in that DAG; no role
// restriction, or the user is in that role. Callers hold p.mu.
func (p *project) folderVisible(a *access, id int) bool {
	userDAG := 0
	if i := p.dagIndexOf(a.dag); i >= 0 {
		userDAG = p.dags[i].ID
	}
	userRole := 0
	if u := p.users[a.user]; u != nil {
		if r := p.roleByName(u.Role); r != nil {
			userRole = r.ID
		}
	}
	for depth := 0; id != 0 && depth < 100; depth++ {
		f := p.folder(id)
		if f == nil {
			return false
		}
		if f.DAGID != 0 && a.dag != "" && f.DAGID != userDAG {
			return false
		}
		if f.RoleID != 0 && f.RoleID != userRole {
			return false
		}
		id = f.Parent
	}
	return true
}

// repoFolderParam reads folder_id (0 = top) and checks it is open to the
// user. Callers hold c.proj.mu.
func (c *call) repoFolderParam() (int, *apiError) {
	s := strings.TrimSpace(c.p.str("folder_id"))
	if s == "" {
		return 0, nil
	}
	id, err := strconv.Atoi(s)
	if err != nil || c.proj.folder(id) == nil || !c.proj.folderVisible(c.acc, id) {
		return 0, errorf(400, "The folder_id '"+s+"' does not exist in the File Repository or you do not have access to it.")
	}
	return id, nil
}

// repoDoc reads doc_id and finds a repository file the user may use.
func (c *call) repoDoc() (*doc, *apiError) {
	s := strings.TrimSpace(c.p.str("doc_id"))
	id, err := strconv.Atoi(s)
	d := c.proj.docs[id]
	if s == "" {
		return nil, errorf(400, "The parameter 'doc_id' is missing")
	}
	if err != nil || d == nil || !d.Repo || !c.proj.folderVisible(c.acc, d.Folder) {
		return nil, errorf(400, "The doc_id '"+s+"' does not exist in the File Repository or you do not have access to it.")
	}
	return d, nil
}

func (c *call) repoLog(action, details string) {
	c.proj.log = append(c.proj.log, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: action + " (API)", details: details, kind: logManage})
}

func (c *call) repoCreateFolder(w http.ResponseWriter) error {
	name := strings.TrimSpace(c.p.str("name"))
	if name == "" {
		return errorf(400, "The parameter 'name' is missing")
	}
	if len([]rune(name)) > 150 {
		return errorf(400, "The folder name cannot be longer than 150 characters.")
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	parent, aerr := c.repoFolderParam()
	if aerr != nil {
		return aerr
	}
	f := &repoFolder{Name: name, Parent: parent}
	if s := strings.TrimSpace(c.p.str("dag_id")); s != "" {
		id, err := strconv.Atoi(s)
		if err != nil || !p.hasDAGID(id) {
			return errorf(400, "The dag_id '"+s+"' is not a valid Data Access Group ID for this project.")
		}
		f.DAGID = id
	} else if i := p.dagIndexOf(c.acc.dag); i >= 0 {
		f.DAGID = p.dags[i].ID // a DAG user's folders stay in the DAG
	}
	if s := strings.TrimSpace(c.p.str("role_id")); s != "" {
		id, err := strconv.Atoi(s)
		if err != nil || !p.hasRoleID(id) {
			return errorf(400, "The role_id '"+s+"' is not a valid user role ID for this project.")
		}
		f.RoleID = id
	}
	for _, x := range p.folders {
		f.ID = max(f.ID, x.ID)
	}
	f.ID++
	p.folders = append(p.folders, f)
	c.repoLog("Create folder in File Repository", "folder = '"+name+"'")
	c.s.persistFolders(p)
	t := &table{header: []string{"folder_id"}, ints: map[string]bool{"folder_id": true}, rows: [][]string{{strconv.Itoa(f.ID)}}}
	t.write(w, c.p.format())
	return nil
}

func (p *project) hasDAGID(id int) bool {
	for _, d := range p.dags {
		if d.ID == id {
			return true
		}
	}
	return false
}

func (p *project) hasRoleID(id int) bool {
	for _, r := range p.roles {
		if r.ID == id {
			return true
		}
	}
	return false
}

// repoList lists a folder's sub-folders, then its files, by name: JSON
// objects {"folder_id","name"} and {"doc_id","name"}.
func (c *call) repoList(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	id, aerr := c.repoFolderParam()
	if aerr != nil {
		return aerr
	}
	var folders []*repoFolder
	for _, f := range p.folders {
		if f.Parent == id && p.folderVisible(c.acc, f.ID) {
			folders = append(folders, f)
		}
	}
	sort.Slice(folders, func(i, j int) bool { return folders[i].Name < folders[j].Name })
	var files []*doc
	for _, d := range p.docs {
		if d.Repo && d.Folder == id {
			files = append(files, d)
		}
	}
	sort.Slice(files, func(i, j int) bool {
		return files[i].Name < files[j].Name || files[i].Name == files[j].Name && files[i].ID < files[j].ID
	})
	if c.p.format() == "json" {
		buf := []byte{'['}
		for _, f := range folders {
			if len(buf) > 1 {
				buf = append(buf, ',')
			}
			buf = fmt.Appendf(buf, `{"folder_id":%d,"name":%s}`, f.ID, appendJSONString(nil, f.Name))
		}
		for _, d := range files {
			if len(buf) > 1 {
				buf = append(buf, ',')
			}
			buf = fmt.Appendf(buf, `{"doc_id":%d,"name":%s}`, d.ID, appendJSONString(nil, d.Name))
		}
		writeBody(w, "json", string(append(buf, ']')))
		return nil
	}
	t := &table{header: []string{"folder_id", "doc_id", "name"}}
	for _, f := range folders {
		t.rows = append(t.rows, []string{strconv.Itoa(f.ID), "", f.Name})
	}
	for _, d := range files {
		t.rows = append(t.rows, []string{"", strconv.Itoa(d.ID), d.Name})
	}
	t.write(w, c.p.format())
	return nil
}

func (c *call) repoImport(w http.ResponseWriter) error {
	fh, src, aerr := c.upload()
	if aerr != nil {
		return aerr
	}
	defer src.Close()
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	folder, aerr := c.repoFolderParam()
	if aerr != nil {
		return aerr
	}
	d, aerr := c.saveUpload(fh, src)
	if aerr != nil {
		return aerr
	}
	d.Repo, d.Folder = true, folder
	c.s.persistDocs(p, []*doc{d}, nil)
	c.repoLog("Upload file to File Repository", "doc_id = "+strconv.Itoa(d.ID))
	writeBody(w, c.rf, "")
	return nil
}

func (c *call) repoExport(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	d, aerr := c.repoDoc()
	if aerr != nil {
		p.mu.RUnlock()
		return aerr
	}
	body, err := c.s.openDoc(p, d)
	p.mu.RUnlock()
	if err != nil {
		return err
	}
	defer body.Close()
	p.mu.Lock()
	c.repoLog("Download file from File Repository", "doc_id = "+strconv.Itoa(d.ID))
	p.mu.Unlock()
	writeFileAnswer(w, d, body)
	return nil
}

func (c *call) repoDelete(w http.ResponseWriter) error {
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	d, aerr := c.repoDoc()
	if aerr != nil {
		return aerr
	}
	c.s.dropDoc(p, d.ID)
	c.s.persistDocs(p, nil, []int{d.ID})
	c.repoLog("Delete file from File Repository", "doc_id = "+strconv.Itoa(d.ID))
	writeBody(w, c.rf, "")
	return nil
}
