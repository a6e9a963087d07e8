// Package odm reads and writes REDCap's project XML: CDISC ODM 1.3.1 with
// REDCap's extensions (the "Download project XML" file and the API's
// content=project_xml), with or without ClinicalData.
package odm

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// Project is what a project XML holds, in the API's own shapes.
type Project struct {
	Title         string
	RecordIDField string
	Purpose       int
	Autonumber    bool
	Surveys       bool
	Version       string // SourceSystemVersion
	Fields        []messages.Field
	Instruments   []messages.Instrument
	Arms          []messages.Arm
	Events        []messages.Event
	FEM           []messages.FormEvent
	Repeating     []messages.RepeatingForm
	DAGs          []messages.DAG
	// SurveyForms are the instruments enabled as surveys
	// (redcap:SurveysGroup); SurveyQueue is set when the project has a
	// survey queue (redcap:SurveysQueueGroup).
	SurveyForms []Survey
	SurveyQueue bool
	// Rows are flat raw rows keyed by export column names, plus
	// redcap_event_name, redcap_repeat_instrument, redcap_repeat_instance and
	// redcap_data_access_group where they apply. Checkbox columns hold "1"
	// or "0"; file fields hold the document name.
	Rows []messages.Row
}

// Survey is one survey-enabled instrument.
type Survey struct {
	Form          string `json:"form"`
	Title         string `json:"title,omitempty"`
	SaveAndReturn bool   `json:"save_and_return,omitempty"` // "Save & Return Later" (return codes)
}

type xODM struct {
	XMLName             xml.Name       `xml:"ODM"`
	SourceSystemVersion string         `xml:"SourceSystemVersion,attr"`
	Study               xStudy         `xml:"Study"`
	ClinicalData        *xClinicalData `xml:"ClinicalData"`
}

type xStudy struct {
	GlobalVariables xGlobal `xml:"GlobalVariables"`
	MetaDataVersion xMeta   `xml:"MetaDataVersion"`
}

type xGlobal struct {
	StudyName     string `xml:"StudyName"`
	Autonumbering string `xml:"RecordAutonumberingEnabled"`
	Surveys       string `xml:"SurveysEnabled"`
	Purpose       string `xml:"Purpose"`
	DAGs          []struct {
		Name string `xml:"group_name,attr"`
	} `xml:"DataAccessGroupsGroup>DataAccessGroups"`
	RepeatingInstruments []struct {
		Event string `xml:"UniqueEventName,attr"`
		Form  string `xml:"RepeatInstrument,attr"`
		Label string `xml:"CustomLabel,attr"`
	} `xml:"RepeatingInstrumentsAndEvents>RepeatingInstruments>RepeatingInstrument"`
	RepeatingEvents []struct {
		Event string `xml:"UniqueEventName,attr"`
	} `xml:"RepeatingInstrumentsAndEvents>RepeatingEvents>RepeatingEvent"`
	SurveyDefs []struct {
		Form       string `xml:"form_name,attr"`
		Title      string `xml:"title,attr"`
		Enabled    string `xml:"survey_enabled,attr"`
		SaveReturn string `xml:"save_and_return,attr"`
	} `xml:"SurveysGroup>Surveys"`
	Queue []struct {
		SurveyID string `xml:"survey_id,attr"`
	} `xml:"SurveysQueueGroup>SurveysQueue"`
}

type xMeta struct {
	RecordIDField string      `xml:"RecordIdField,attr"`
	StudyEventDef []xEventDef `xml:"StudyEventDef"`
	FormDef       []xFormDef  `xml:"FormDef"`
	ItemGroupDef  []xGroupDef `xml:"ItemGroupDef"`
	ItemDef       []xItemDef  `xml:"ItemDef"`
	CodeList      []xCodeList `xml:"CodeList"`
}

type xEventDef struct {
	OID         string `xml:"OID,attr"`
	EventName   string `xml:"EventName,attr"`
	CustomLabel string `xml:"CustomEventLabel,attr"`
	Unique      string `xml:"UniqueEventName,attr"`
	ArmNum      string `xml:"ArmNum,attr"`
	ArmName     string `xml:"ArmName,attr"`
	DayOffset   string `xml:"DayOffset,attr"`
	OffsetMin   string `xml:"OffsetMin,attr"`
	OffsetMax   string `xml:"OffsetMax,attr"`
	FormRefs    []struct {
		FormName string `xml:"FormName,attr"`
		FormOID  string `xml:"FormOID,attr"`
	} `xml:"FormRef"`
}

type xFormDef struct {
	OID      string `xml:"OID,attr"`
	Name     string `xml:"Name,attr"`
	FormName string `xml:"FormName,attr"`
	Groups   []struct {
		OID string `xml:"ItemGroupOID,attr"`
	} `xml:"ItemGroupRef"`
}

type xGroupDef struct {
	OID   string `xml:"OID,attr"`
	Items []struct {
		OID      string `xml:"ItemOID,attr"`
		Variable string `xml:"Variable,attr"`
	} `xml:"ItemRef"`
}

type xItemDef struct {
	OID            string `xml:"OID,attr"`
	Name           string `xml:"Name,attr"`
	Variable       string `xml:"Variable,attr"`
	FieldType      string `xml:"FieldType,attr"`
	Validation     string `xml:"TextValidationType,attr"`
	FieldNote      string `xml:"FieldNote,attr"`
	SectionHeader  string `xml:"SectionHeader,attr"`
	Identifier     string `xml:"Identifier,attr"`
	BranchingLogic string `xml:"BranchingLogic,attr"`
	RequiredField  string `xml:"RequiredField,attr"`
	Alignment      string `xml:"CustomAlignment,attr"`
	QuestionNumber string `xml:"QuestionNumber,attr"`
	MatrixGroup    string `xml:"MatrixGroupName,attr"`
	MatrixRanking  string `xml:"MatrixRanking,attr"`
	Annotation     string `xml:"FieldAnnotation,attr"`
	Calculation    string `xml:"Calculation,attr"`
	SliderLabels   string `xml:"SliderLabels,attr"`
	Label          string `xml:"Question>TranslatedText"`
	CodeListRef    struct {
		OID string `xml:"CodeListOID,attr"`
	} `xml:"CodeListRef"`
	Ranges []struct {
		Comparator string `xml:"Comparator,attr"`
		Value      string `xml:"CheckValue"`
	} `xml:"RangeCheck"`
}

type xCodeList struct {
	OID             string `xml:"OID,attr"`
	CheckboxChoices string `xml:"CheckboxChoices,attr"`
	Items           []struct {
		Code  string `xml:"CodedValue,attr"`
		Label string `xml:"Decode>TranslatedText"`
	} `xml:"CodeListItem"`
}

type xClinicalData struct {
	Subjects []struct {
		Key    string       `xml:"SubjectKey,attr"`
		Events []xEventData `xml:"StudyEventData"`
		Forms  []xFormData  `xml:"FormData"`
	} `xml:"SubjectData"`
}

type xEventData struct {
	OID       string      `xml:"StudyEventOID,attr"`
	Unique    string      `xml:"UniqueEventName,attr"`
	RepeatKey string      `xml:"StudyEventRepeatKey,attr"`
	Forms     []xFormData `xml:"FormData"`
}

type xFormData struct {
	OID       string `xml:"FormOID,attr"`
	RepeatKey string `xml:"FormRepeatKey,attr"`
	Groups    []struct {
		Items []struct {
			OID   string `xml:"ItemOID,attr"`
			Value string `xml:"Value,attr"`
		} `xml:"ItemData"`
		Files []struct {
			OID     string `xml:"ItemOID,attr"`
			DocName string `xml:"DocName,attr"`
		} `xml:"ItemDataBase64Binary"`
	} `xml:"ItemGroupData"`
}

var fieldTypes = map[string]string{"textarea": "notes", "select": "dropdown"}

var uniqueRE = regexp.MustCompile(`[^a-z0-9_]+`)

// UniqueDAGName is REDCap's unique group name for a DAG label.
func UniqueDAGName(label string) string {
	s := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(label)), " ", "_")
	s = uniqueRE.ReplaceAllString(s, "")
	if len(s) > 18 {
		s = s[:18]
	}
	return s
}

// Parse reads a project XML.
func Parse(r io.Reader) (*Project, error) {
	var x xODM
	dec := xml.NewDecoder(r)
	if err := dec.Decode(&x); err != nil {
		return nil, fmt.Errorf("odm: the project XML could not be parsed: %w", err)
	}
	g := x.Study.GlobalVariables
	m := x.Study.MetaDataVersion
	p := &Project{
		Title:         strings.TrimSpace(g.StudyName),
		RecordIDField: m.RecordIDField,
		Autonumber:    g.Autonumbering == "1",
		Surveys:       g.Surveys == "1",
		Version:       x.SourceSystemVersion,
	}
	p.Purpose, _ = strconv.Atoi(g.Purpose)
	for _, sv := range g.SurveyDefs {
		if sv.Enabled == "0" || sv.Form == "" {
			continue
		}
		p.SurveyForms = append(p.SurveyForms, Survey{Form: sv.Form, Title: sv.Title, SaveAndReturn: sv.SaveReturn == "1"})
	}
	p.SurveyQueue = len(g.Queue) > 0
	for _, d := range g.DAGs {
		p.DAGs = append(p.DAGs, messages.DAG{Name: d.Name, Unique: UniqueDAGName(d.Name)})
	}

	items := map[string]*xItemDef{}
	for i := range m.ItemDef {
		items[m.ItemDef[i].OID] = &m.ItemDef[i]
	}
	groups := map[string]*xGroupDef{}
	for i := range m.ItemGroupDef {
		groups[m.ItemGroupDef[i].OID] = &m.ItemGroupDef[i]
	}
	codes := map[string]*xCodeList{}
	for i := range m.CodeList {
		codes[m.CodeList[i].OID] = &m.CodeList[i]
	}
	formByOID := map[string]string{}
	seen := map[string]bool{}
	for _, f := range m.FormDef {
		name := f.FormName
		if name == "" {
			name = strings.TrimPrefix(f.OID, "Form.")
		}
		formByOID[f.OID] = name
		label := f.Name
		if label == "" {
			label = name
		}
		p.Instruments = append(p.Instruments, messages.Instrument{InstrumentName: name, InstrumentLabel: label})
		for _, gr := range f.Groups {
			gd := groups[gr.OID]
			if gd == nil {
				return nil, fmt.Errorf("odm: form %s refers to item group %s, which is not defined", name, gr.OID)
			}
			for _, ir := range gd.Items {
				it := items[ir.OID]
				if it == nil && (ir.OID == "redcap_data_access_group" || ir.OID == "redcap_survey_identifier") {
					continue // a pseudo-field: some exports reference it without an ItemDef
				}
				if it == nil {
					return nil, fmt.Errorf("odm: item group %s refers to item %s, which is not defined", gr.OID, ir.OID)
				}
				v := it.Variable
				if v == "" {
					v = it.Name
				}
				if seen[v] || v == "redcap_data_access_group" || v == "redcap_survey_identifier" ||
					v == name+"_complete" || v == name+"_timestamp" {
					continue
				}
				seen[v] = true
				p.Fields = append(p.Fields, fieldFrom(it, v, name, codes))
			}
		}
	}
	if len(p.Fields) == 0 {
		return nil, fmt.Errorf("odm: the project XML defines no fields")
	}
	if p.RecordIDField == "" {
		p.RecordIDField = p.Fields[0].FieldName
	}

	// Events, arms and the form-event mapping.
	arms := map[int]bool{}
	eventByOID := map[string]string{}
	for _, e := range m.StudyEventDef {
		arm, _ := strconv.Atoi(e.ArmNum)
		if arm == 0 {
			arm = 1
		}
		ev := messages.Event{EventName: e.EventName, ArmNum: arm, UniqueEventName: e.Unique, CustomEventLabel: e.CustomLabel}
		ev.DayOffset, _ = strconv.Atoi(e.DayOffset)
		ev.OffsetMin, _ = strconv.Atoi(e.OffsetMin)
		ev.OffsetMax, _ = strconv.Atoi(e.OffsetMax)
		p.Events = append(p.Events, ev)
		eventByOID[e.OID] = e.Unique
		if !arms[arm] {
			arms[arm] = true
			name := e.ArmName
			if name == "" {
				name = fmt.Sprintf("Arm %d", arm)
			}
			p.Arms = append(p.Arms, messages.Arm{ArmNum: arm, Name: name})
		}
		for _, fr := range e.FormRefs {
			fn := fr.FormName
			if fn == "" {
				fn = formByOID[fr.FormOID]
			}
			p.FEM = append(p.FEM, messages.FormEvent{ArmNum: arm, UniqueEventName: e.Unique, Form: fn})
		}
	}
	sort.SliceStable(p.Arms, func(i, j int) bool { return p.Arms[i].ArmNum < p.Arms[j].ArmNum })
	longitudinal := len(p.Events) > 0
	repForm := map[[2]string]bool{}
	repEvent := map[string]bool{}
	for _, r := range g.RepeatingInstruments {
		ev := r.Event
		if !longitudinal {
			ev = ""
		}
		p.Repeating = append(p.Repeating, messages.RepeatingForm{EventName: ev, FormName: r.Form, CustomFormLabel: r.Label})
		repForm[[2]string{ev, r.Form}] = true
	}
	for _, r := range g.RepeatingEvents {
		if longitudinal {
			p.Repeating = append(p.Repeating, messages.RepeatingForm{EventName: r.Event})
			repEvent[r.Event] = true
		}
	}

	// Clinical data.
	if x.ClinicalData != nil {
		for _, sd := range x.ClinicalData.Subjects {
			var order []string
			rows := map[string]messages.Row{}
			dag := ""
			get := func(ev, rep, inst string) messages.Row {
				k := ev + "\x00" + rep + "\x00" + inst
				r, ok := rows[k]
				if !ok {
					r = messages.Row{p.RecordIDField: sd.Key}
					if longitudinal {
						r["redcap_event_name"] = ev
					}
					if rep != "" || inst != "" {
						r["redcap_repeat_instrument"] = rep
						r["redcap_repeat_instance"] = inst
					}
					rows[k] = r
					order = append(order, k)
				}
				return r
			}
			addForm := func(ev, evKey string, fd xFormData) {
				form := formByOID[fd.OID]
				rep, inst := "", ""
				switch {
				case longitudinal && repEvent[ev]:
					inst = orOne(evKey)
				case repForm[[2]string{ev, form}] || (!longitudinal && repForm[[2]string{"", form}]):
					rep, inst = form, orOne(fd.RepeatKey)
				}
				r := get(ev, rep, inst)
				for _, gd := range fd.Groups {
					for _, it := range gd.Items {
						if it.OID == "redcap_data_access_group" {
							dag = it.Value
							continue
						}
						r[it.OID] = it.Value
					}
					for _, f := range gd.Files {
						r[f.OID] = f.DocName
					}
				}
			}
			for _, fd := range sd.Forms {
				addForm("", "", fd)
			}
			for _, ed := range sd.Events {
				ev := ed.Unique
				if ev == "" {
					ev = eventByOID[ed.OID]
				}
				for _, fd := range ed.Forms {
					addForm(ev, ed.RepeatKey, fd)
				}
			}
			for i, k := range order {
				r := rows[k]
				if i == 0 && dag != "" {
					r["redcap_data_access_group"] = dag
				}
				p.Rows = append(p.Rows, r)
			}
		}
	}
	return p, nil
}

func orOne(s string) string {
	if s == "" {
		return "1"
	}
	return s
}

func fieldFrom(it *xItemDef, v, form string, codes map[string]*xCodeList) messages.Field {
	ft := it.FieldType
	if t, ok := fieldTypes[ft]; ok {
		ft = t
	}
	if ft == "" {
		ft = "text"
	}
	val := it.Validation
	switch val {
	case "float":
		val = "number"
	case "int":
		val = "integer"
	}
	f := messages.Field{
		FieldName: v, FormName: form, SectionHeader: it.SectionHeader, FieldType: ft, FieldLabel: it.Label,
		FieldNote: it.FieldNote, TextValidationTypeOrShowSlider: val, Identifier: it.Identifier,
		BranchingLogic: it.BranchingLogic, RequiredField: it.RequiredField, CustomAlignment: it.Alignment,
		QuestionNumber: it.QuestionNumber, MatrixGroupName: it.MatrixGroup, MatrixRanking: it.MatrixRanking,
		FieldAnnotation: it.Annotation,
	}
	for _, rc := range it.Ranges {
		switch rc.Comparator {
		case "GE":
			f.TextValidationMin = rc.Value
		case "LE":
			f.TextValidationMax = rc.Value
		}
	}
	switch ft {
	case "calc":
		f.SelectChoicesOrCalculations = it.Calculation
	case "slider":
		f.SelectChoicesOrCalculations = it.SliderLabels
	case "checkbox":
		if cl := codes[it.CodeListRef.OID]; cl != nil {
			f.SelectChoicesOrCalculations = spaceChoices(cl.CheckboxChoices)
		}
	case "radio", "dropdown":
		if cl := codes[it.CodeListRef.OID]; cl != nil {
			parts := make([]string, len(cl.Items))
			for i, c := range cl.Items {
				parts[i] = c.Code + ", " + c.Label
			}
			f.SelectChoicesOrCalculations = strings.Join(parts, " | ")
		}
	}
	return f
}

// spaceChoices turns "1, a|2, b" into "1, a | 2, b".
func spaceChoices(s string) string {
	parts := strings.Split(s, "|")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, " | ")
}

// Write renders p as a project XML. Rows are written as ClinicalData when
// withData is set.
func Write(w io.Writer, p *Project, withData bool, asOf string) error {
	var b bytes.Buffer
	esc := func(s string) string {
		var x bytes.Buffer
		_ = xml.EscapeText(&x, []byte(s))
		return x.String()
	}
	oid := "Project." + regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(p.Title, "")
	mdv := "Metadata." + strings.TrimPrefix(oid, "Project.")
	fmt.Fprintf(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<ODM xmlns=\"http://www.cdisc.org/ns/odm/v1.3\" xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:redcap=\"https://projectredcap.org\" xsi:schemaLocation=\"http://www.cdisc.org/ns/odm/v1.3 schema/odm/ODM1-3-1.xsd\" ODMVersion=\"1.3.1\" FileOID=\"000-00-0000\" FileType=\"Snapshot\" Description=\"%s\" AsOfDateTime=\"%s\" CreationDateTime=\"%s\" SourceSystem=\"REDCap\" SourceSystemVersion=\"%s\">\n", esc(p.Title), asOf, asOf, esc(p.Version))
	fmt.Fprintf(&b, "<Study OID=\"%s\">\n<GlobalVariables>\n\t<StudyName>%s</StudyName>\n\t<StudyDescription>This file contains the metadata, events, and data for REDCap project \"%s\".</StudyDescription>\n\t<ProtocolName>%s</ProtocolName>\n", oid, esc(p.Title), esc(p.Title), esc(p.Title))
	fmt.Fprintf(&b, "\t<redcap:RecordAutonumberingEnabled>%s</redcap:RecordAutonumberingEnabled>\n\t<redcap:SurveysEnabled>%s</redcap:SurveysEnabled>\n\t<redcap:Purpose>%d</redcap:Purpose>\n", b01(p.Autonumber), b01(p.Surveys), p.Purpose)
	longitudinal := len(p.Events) > 0
	if len(p.Repeating) > 0 {
		b.WriteString("\t<redcap:RepeatingInstrumentsAndEvents>\n")
		var ri, re []messages.RepeatingForm
		for _, r := range p.Repeating {
			if r.FormName == "" {
				re = append(re, r)
			} else {
				ri = append(ri, r)
			}
		}
		if len(ri) > 0 {
			b.WriteString("\t\t<redcap:RepeatingInstruments>\n")
			for _, r := range ri {
				ev := r.EventName
				if !longitudinal {
					ev = "event_1_arm_1"
				}
				fmt.Fprintf(&b, "\t\t\t<redcap:RepeatingInstrument redcap:UniqueEventName=\"%s\" redcap:RepeatInstrument=\"%s\" redcap:CustomLabel=\"%s\"/>\n", esc(ev), esc(r.FormName), esc(r.CustomFormLabel))
			}
			b.WriteString("\t\t</redcap:RepeatingInstruments>\n")
		}
		if len(re) > 0 {
			b.WriteString("\t\t<redcap:RepeatingEvents>\n")
			for _, r := range re {
				fmt.Fprintf(&b, "\t\t\t<redcap:RepeatingEvent redcap:UniqueEventName=\"%s\"/>\n", esc(r.EventName))
			}
			b.WriteString("\t\t</redcap:RepeatingEvents>\n")
		}
		b.WriteString("\t</redcap:RepeatingInstrumentsAndEvents>\n")
	}
	if len(p.SurveyForms) > 0 {
		b.WriteString("\t<redcap:SurveysGroup>\n")
		for _, sv := range p.SurveyForms {
			fmt.Fprintf(&b, "\t\t<redcap:Surveys form_name=\"%s\" title=\"%s\" survey_enabled=\"1\" save_and_return=\"%s\"/>\n", esc(sv.Form), esc(sv.Title), b01(sv.SaveAndReturn))
		}
		b.WriteString("\t</redcap:SurveysGroup>\n")
	}
	if p.SurveyQueue && len(p.SurveyForms) > 0 {
		fmt.Fprintf(&b, "\t<redcap:SurveysQueueGroup>\n\t\t<redcap:SurveysQueue survey_form=\"%s\" active=\"1\"/>\n\t</redcap:SurveysQueueGroup>\n", esc(p.SurveyForms[0].Form))
	}
	if len(p.DAGs) > 0 {
		b.WriteString("\t<redcap:DataAccessGroupsGroup>\n")
		for _, d := range p.DAGs {
			fmt.Fprintf(&b, "\t\t<redcap:DataAccessGroups group_name=\"%s\"/>\n", esc(d.Name))
		}
		b.WriteString("\t</redcap:DataAccessGroupsGroup>\n")
	}
	b.WriteString("</GlobalVariables>\n")
	fmt.Fprintf(&b, "<MetaDataVersion OID=\"%s\" Name=\"%s\" redcap:RecordIdField=\"%s\">\n", mdv, esc(p.Title), esc(p.RecordIDField))
	if longitudinal {
		b.WriteString("\t<Protocol>\n")
		for i, e := range p.Events {
			fmt.Fprintf(&b, "\t\t<StudyEventRef StudyEventOID=\"Event.%s\" OrderNumber=\"%d\" Mandatory=\"No\"/>\n", esc(e.UniqueEventName), i+1)
		}
		b.WriteString("\t</Protocol>\n")
		armName := map[int]string{}
		for _, a := range p.Arms {
			armName[a.ArmNum] = a.Name
		}
		for _, e := range p.Events {
			fmt.Fprintf(&b, "\t<StudyEventDef OID=\"Event.%s\" Name=\"%s\" Type=\"Common\" Repeating=\"No\" redcap:EventName=\"%s\" redcap:CustomEventLabel=\"%s\" redcap:UniqueEventName=\"%s\" redcap:ArmNum=\"%d\" redcap:ArmName=\"%s\" redcap:DayOffset=\"%d\" redcap:OffsetMin=\"%d\" redcap:OffsetMax=\"%d\">\n",
				esc(e.UniqueEventName), esc(fmt.Sprintf("%s (Arm %d: %s)", e.EventName, e.ArmNum, armName[e.ArmNum])), esc(e.EventName), esc(e.CustomEventLabel), esc(e.UniqueEventName), e.ArmNum, esc(armName[e.ArmNum]), e.DayOffset, e.OffsetMin, e.OffsetMax)
			n := 0
			for _, m := range p.FEM {
				if m.UniqueEventName == e.UniqueEventName {
					n++
					fmt.Fprintf(&b, "\t\t<FormRef FormOID=\"Form.%s\" OrderNumber=\"%d\" Mandatory=\"No\" redcap:FormName=\"%s\"/>\n", esc(m.Form), n, esc(m.Form))
				}
			}
			b.WriteString("\t</StudyEventDef>\n")
		}
	}
	byForm := map[string][]messages.Field{}
	for _, f := range p.Fields {
		byForm[f.FormName] = append(byForm[f.FormName], f)
	}
	for _, in := range p.Instruments {
		fmt.Fprintf(&b, "\t<FormDef OID=\"Form.%s\" Name=\"%s\" Repeating=\"No\" redcap:FormName=\"%s\">\n", esc(in.InstrumentName), esc(in.InstrumentLabel), esc(in.InstrumentName))
		fmt.Fprintf(&b, "\t\t<ItemGroupRef ItemGroupOID=\"%s.items\" Mandatory=\"No\"/>\n", esc(in.InstrumentName))
		fmt.Fprintf(&b, "\t\t<ItemGroupRef ItemGroupOID=\"%s.%s_complete\" Mandatory=\"No\"/>\n", esc(in.InstrumentName), esc(in.InstrumentName))
		b.WriteString("\t</FormDef>\n")
	}
	for i, in := range p.Instruments {
		fmt.Fprintf(&b, "\t<ItemGroupDef OID=\"%s.items\" Name=\"%s\" Repeating=\"No\">\n", esc(in.InstrumentName), esc(in.InstrumentName))
		for _, f := range byForm[in.InstrumentName] {
			for _, oid := range itemOIDs(f) {
				fmt.Fprintf(&b, "\t\t<ItemRef ItemOID=\"%s\" Mandatory=\"No\" redcap:Variable=\"%s\"/>\n", esc(oid), esc(f.FieldName))
			}
			if i == 0 && f.FieldName == p.RecordIDField && len(p.DAGs) > 0 {
				b.WriteString("\t\t<ItemRef ItemOID=\"redcap_data_access_group\" Mandatory=\"No\" redcap:Variable=\"redcap_data_access_group\"/>\n")
			}
		}
		b.WriteString("\t</ItemGroupDef>\n")
		fmt.Fprintf(&b, "\t<ItemGroupDef OID=\"%s.%s_complete\" Name=\"Form Status\" Repeating=\"No\">\n\t\t<ItemRef ItemOID=\"%s_complete\" Mandatory=\"No\" redcap:Variable=\"%s_complete\"/>\n\t</ItemGroupDef>\n", esc(in.InstrumentName), esc(in.InstrumentName), esc(in.InstrumentName), esc(in.InstrumentName))
	}
	var codeLists bytes.Buffer
	for _, f := range p.Fields {
		writeItemDefs(&b, &codeLists, f, esc)
	}
	for _, in := range p.Instruments {
		n := in.InstrumentName + "_complete"
		fmt.Fprintf(&b, "\t<ItemDef OID=\"%s\" Name=\"%s\" DataType=\"text\" Length=\"1\" redcap:Variable=\"%s\" redcap:FieldType=\"select\" redcap:SectionHeader=\"Form Status\">\n\t\t<Question><TranslatedText>Complete?</TranslatedText></Question>\n\t\t<CodeListRef CodeListOID=\"%s.choices\"/>\n\t</ItemDef>\n", esc(n), esc(n), esc(n), esc(n))
		fmt.Fprintf(&codeLists, "\t<CodeList OID=\"%s.choices\" Name=\"%s\" DataType=\"text\" redcap:Variable=\"%s\">\n\t\t<CodeListItem CodedValue=\"0\"><Decode><TranslatedText>Incomplete</TranslatedText></Decode></CodeListItem>\n\t\t<CodeListItem CodedValue=\"1\"><Decode><TranslatedText>Unverified</TranslatedText></Decode></CodeListItem>\n\t\t<CodeListItem CodedValue=\"2\"><Decode><TranslatedText>Complete</TranslatedText></Decode></CodeListItem>\n\t</CodeList>\n", esc(n), esc(n), esc(n))
	}
	b.Write(codeLists.Bytes())
	b.WriteString("</MetaDataVersion>\n</Study>\n")
	if withData && len(p.Rows) > 0 {
		writeClinical(&b, p, oid, mdv, esc)
	}
	b.WriteString("</ODM>")
	_, err := w.Write(b.Bytes())
	return err
}

func b01(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

type choice struct{ code, label string }

func parseChoices(s string) []choice {
	var out []choice
	for _, part := range strings.Split(s, "|") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		c, l, _ := strings.Cut(part, ",")
		out = append(out, choice{strings.TrimSpace(c), strings.TrimSpace(l)})
	}
	return out
}

var cbRE = regexp.MustCompile(`[^a-z0-9]`)

func itemOIDs(f messages.Field) []string {
	if f.FieldType == "checkbox" {
		var out []string
		for _, c := range parseChoices(f.SelectChoicesOrCalculations) {
			out = append(out, f.FieldName+"___"+cbRE.ReplaceAllString(strings.ToLower(c.code), "_"))
		}
		return out
	}
	return []string{f.FieldName}
}

func writeItemDefs(b, cl *bytes.Buffer, f messages.Field, esc func(string) string) {
	ft := f.FieldType
	switch ft {
	case "notes":
		ft = "textarea"
	case "dropdown":
		ft = "select"
	}
	val := f.TextValidationTypeOrShowSlider
	switch val {
	case "number":
		val = "float"
	case "integer":
		val = "int"
	}
	attrs := func(oid string) string {
		var a strings.Builder
		fmt.Fprintf(&a, "OID=\"%s\" Name=\"%s\" DataType=\"text\" Length=\"999\" redcap:Variable=\"%s\" redcap:FieldType=\"%s\"", esc(oid), esc(oid), esc(f.FieldName), esc(ft))
		opt := [][2]string{{"TextValidationType", val}, {"FieldNote", f.FieldNote}, {"SectionHeader", f.SectionHeader},
			{"Identifier", f.Identifier}, {"BranchingLogic", f.BranchingLogic}, {"RequiredField", f.RequiredField},
			{"CustomAlignment", f.CustomAlignment}, {"QuestionNumber", f.QuestionNumber}, {"MatrixGroupName", f.MatrixGroupName},
			{"MatrixRanking", f.MatrixRanking}, {"FieldAnnotation", f.FieldAnnotation}}
		if f.FieldType == "calc" {
			opt = append(opt, [2]string{"Calculation", f.SelectChoicesOrCalculations})
		}
		if f.FieldType == "slider" {
			opt = append(opt, [2]string{"SliderLabels", f.SelectChoicesOrCalculations})
		}
		for _, o := range opt {
			if o[1] != "" {
				fmt.Fprintf(&a, " redcap:%s=\"%s\"", o[0], esc(o[1]))
			}
		}
		return a.String()
	}
	ranges := func() string {
		var r strings.Builder
		if f.TextValidationMin != "" {
			fmt.Fprintf(&r, "\t\t<RangeCheck Comparator=\"GE\" SoftHard=\"Soft\">\n\t\t\t<CheckValue>%s</CheckValue>\n\t\t</RangeCheck>\n", esc(f.TextValidationMin))
		}
		if f.TextValidationMax != "" {
			fmt.Fprintf(&r, "\t\t<RangeCheck Comparator=\"LE\" SoftHard=\"Soft\">\n\t\t\t<CheckValue>%s</CheckValue>\n\t\t</RangeCheck>\n", esc(f.TextValidationMax))
		}
		return r.String()
	}
	q := "\t\t<Question><TranslatedText>" + esc(f.FieldLabel) + "</TranslatedText></Question>\n"
	switch f.FieldType {
	case "checkbox":
		for _, oid := range itemOIDs(f) {
			fmt.Fprintf(b, "\t<ItemDef %s>\n%s\t\t<CodeListRef CodeListOID=\"%s.choices\"/>\n\t</ItemDef>\n", attrs(oid), q, esc(oid))
			fmt.Fprintf(cl, "\t<CodeList OID=\"%s.choices\" Name=\"%s\" DataType=\"boolean\" redcap:Variable=\"%s\" redcap:CheckboxChoices=\"%s\">\n\t\t<CodeListItem CodedValue=\"1\"><Decode><TranslatedText>Checked</TranslatedText></Decode></CodeListItem>\n\t\t<CodeListItem CodedValue=\"0\"><Decode><TranslatedText>Unchecked</TranslatedText></Decode></CodeListItem>\n\t</CodeList>\n",
				esc(oid), esc(oid), esc(f.FieldName), esc(f.SelectChoicesOrCalculations))
		}
	case "radio", "dropdown", "yesno", "truefalse":
		fmt.Fprintf(b, "\t<ItemDef %s>\n%s\t\t<CodeListRef CodeListOID=\"%s.choices\"/>\n\t</ItemDef>\n", attrs(f.FieldName), q, esc(f.FieldName))
		choices := parseChoices(f.SelectChoicesOrCalculations)
		switch f.FieldType {
		case "yesno":
			choices = []choice{{"1", "Yes"}, {"0", "No"}}
		case "truefalse":
			choices = []choice{{"1", "True"}, {"0", "False"}}
		}
		fmt.Fprintf(cl, "\t<CodeList OID=\"%s.choices\" Name=\"%s\" DataType=\"text\" redcap:Variable=\"%s\">\n", esc(f.FieldName), esc(f.FieldName), esc(f.FieldName))
		for _, c := range choices {
			fmt.Fprintf(cl, "\t\t<CodeListItem CodedValue=\"%s\"><Decode><TranslatedText>%s</TranslatedText></Decode></CodeListItem>\n", esc(c.code), esc(c.label))
		}
		cl.WriteString("\t</CodeList>\n")
	default:
		fmt.Fprintf(b, "\t<ItemDef %s>\n%s%s\t</ItemDef>\n", attrs(f.FieldName), q, ranges())
	}
}

func writeClinical(b *bytes.Buffer, p *Project, oid, mdv string, esc func(string) string) {
	fmt.Fprintf(b, "<ClinicalData StudyOID=\"%s\" MetaDataVersionOID=\"%s\">\n", oid, mdv)
	formOf := map[string]string{}
	var order []string // column order for items
	for _, f := range p.Fields {
		for _, o := range itemOIDs(f) {
			formOf[o] = f.FormName
			order = append(order, o)
		}
	}
	for _, in := range p.Instruments {
		formOf[in.InstrumentName+"_complete"] = in.InstrumentName
	}
	forms := make([]string, len(p.Instruments))
	for i, in := range p.Instruments {
		forms[i] = in.InstrumentName
	}
	longitudinal := len(p.Events) > 0
	cur := ""
	for i, r := range p.Rows {
		rec := r[p.RecordIDField]
		if rec != cur {
			if cur != "" {
				b.WriteString("\t</SubjectData>\n")
			}
			cur = rec
			fmt.Fprintf(b, "\t<SubjectData SubjectKey=\"%s\" redcap:RecordIdField=\"%s\">\n", esc(rec), esc(p.RecordIDField))
		}
		indent := "\t\t"
		rep, inst := r["redcap_repeat_instrument"], r["redcap_repeat_instance"]
		if longitudinal {
			evKey := "1"
			if rep == "" && inst != "" {
				evKey = inst
			}
			fmt.Fprintf(b, "\t\t<StudyEventData StudyEventOID=\"Event.%s\" StudyEventRepeatKey=\"%s\" redcap:UniqueEventName=\"%s\">\n", esc(r["redcap_event_name"]), evKey, esc(r["redcap_event_name"]))
			indent = "\t\t\t"
		}
		for _, form := range forms {
			if rep != "" && rep != form {
				continue
			}
			var items []string
			for _, o := range append(append([]string{}, order...), form+"_complete") {
				if formOf[o] != form {
					continue
				}
				v, ok := r[o]
				if !ok || v == "" {
					continue
				}
				items = append(items, fmt.Sprintf("%s\t\t<ItemData ItemOID=\"%s\" Value=\"%s\"/>\n", indent, esc(o), esc(v)))
				if o == p.RecordIDField && r["redcap_data_access_group"] != "" {
					items = append(items, fmt.Sprintf("%s\t\t<ItemData ItemOID=\"redcap_data_access_group\" Value=\"%s\"/>\n", indent, esc(r["redcap_data_access_group"])))
				}
			}
			if len(items) == 0 {
				continue
			}
			key := "1"
			if rep != "" && inst != "" {
				key = inst
			}
			fmt.Fprintf(b, "%s<FormData FormOID=\"Form.%s\" FormRepeatKey=\"%s\">\n%s\t<ItemGroupData ItemGroupOID=\"%s.items\" ItemGroupRepeatKey=\"1\">\n", indent, esc(form), key, indent, esc(form))
			for _, it := range items {
				b.WriteString(it)
			}
			fmt.Fprintf(b, "%s\t</ItemGroupData>\n%s</FormData>\n", indent, indent)
		}
		if longitudinal {
			b.WriteString("\t\t</StudyEventData>\n")
		}
		if i == len(p.Rows)-1 {
			b.WriteString("\t</SubjectData>\n")
		}
	}
	b.WriteString("</ClinicalData>\n")
}
