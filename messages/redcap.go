package messages

// The REDCap shapes below travel inside metadata snapshots and record
// messages. Their JSON names are REDCap's own API names, so the REDCap client
// decodes API answers straight into them.

// Row is one flat REDCap export row: field name to raw value, "" for empty.
// redcap_repeat_instance (an integer in REDCap's JSON) is kept as its
// decimal string so that every value has one type.
type Row map[string]string

// Field is one row of REDCap's Export Metadata (the data dictionary), with
// the 18 columns in REDCap's order.
type Field struct {
	FieldName                      string `json:"field_name"`
	FormName                       string `json:"form_name"`
	SectionHeader                  string `json:"section_header"`
	FieldType                      string `json:"field_type"`
	FieldLabel                     string `json:"field_label"`
	SelectChoicesOrCalculations    string `json:"select_choices_or_calculations"`
	FieldNote                      string `json:"field_note"`
	TextValidationTypeOrShowSlider string `json:"text_validation_type_or_show_slider_number"`
	TextValidationMin              string `json:"text_validation_min"`
	TextValidationMax              string `json:"text_validation_max"`
	Identifier                     string `json:"identifier"`
	BranchingLogic                 string `json:"branching_logic"`
	RequiredField                  string `json:"required_field"`
	CustomAlignment                string `json:"custom_alignment"`
	QuestionNumber                 string `json:"question_number"`
	MatrixGroupName                string `json:"matrix_group_name"`
	MatrixRanking                  string `json:"matrix_ranking"`
	FieldAnnotation                string `json:"field_annotation"`
}

// Instrument is one row of Export Instruments.
type Instrument struct {
	InstrumentName  string `json:"instrument_name"`
	InstrumentLabel string `json:"instrument_label"`
}

// Arm is one row of Export Arms.
type Arm struct {
	ArmNum int    `json:"arm_num"`
	Name   string `json:"name"`
}

// Event is one row of Export Events.
type Event struct {
	EventName        string `json:"event_name"`
	ArmNum           int    `json:"arm_num"`
	UniqueEventName  string `json:"unique_event_name"`
	CustomEventLabel string `json:"custom_event_label"`
	EventID          int    `json:"event_id"`
	DayOffset        int    `json:"day_offset"`
	OffsetMin        int    `json:"offset_min"`
	OffsetMax        int    `json:"offset_max"`
}

// FormEvent is one row of Export Instrument-Event Mappings.
type FormEvent struct {
	ArmNum          int    `json:"arm_num"`
	UniqueEventName string `json:"unique_event_name"`
	Form            string `json:"form"`
}

// RepeatingForm is one row of Export Repeating Instruments and Events.
// FormName is "" when the whole event repeats.
type RepeatingForm struct {
	EventName       string `json:"event_name"`
	FormName        string `json:"form_name"`
	CustomFormLabel string `json:"custom_form_label"`
}

// DAG is one row of Export DAGs.
type DAG struct {
	Name   string `json:"data_access_group_name"`
	Unique string `json:"unique_group_name"`
	ID     int    `json:"data_access_group_id"`
}

// ExportFieldName is one row of Export List of Export Field Names.
type ExportFieldName struct {
	OriginalFieldName string `json:"original_field_name"`
	ChoiceValue       string `json:"choice_value"`
	ExportFieldName   string `json:"export_field_name"`
}

// ProjectInfo is the subset of Export Project Info the pipeline uses.
type ProjectInfo struct {
	ProjectID                       int    `json:"project_id"`
	ProjectTitle                    string `json:"project_title"`
	IsLongitudinal                  int    `json:"is_longitudinal"`
	HasRepeatingInstrumentsOrEvents int    `json:"has_repeating_instruments_or_events"`
	SurveysEnabled                  int    `json:"surveys_enabled"`
	RecordAutonumberingEnabled      int    `json:"record_autonumbering_enabled"`
	InProduction                    int    `json:"in_production"`
}
